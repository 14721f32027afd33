"""Outbound webhooks and notifications of a team: where to tell which app events, and each delivery's fate."""

from django.conf import settings
from django.db import models

from berth.accounts.models import Team

# What a webhook can subscribe to (berth.hooks.services maps the platform's app events onto these)
EVENTS = (
    "deploy.started",
    "deploy.live",
    "deploy.failed",
    "deploy.rolled_back",
    "build.failed",
    "app.crashed",
    "cert.alarm",
    "backup.alarm",
)


class WebhookKind(models.TextChoices):
    HTTP = "http"  # a signed JSON POST (Berth-Signature)
    SLACK = "slack"  # a Slack-compatible incoming webhook: {"text": ...}
    EMAIL = "email"  # an e-mail through BERTH_SMTP_URL


class Webhook(models.Model):
    """One receiver of a team's app events. The HTTP kind signs each body with `secret` (Fernet-encrypted here;
    shown once, when the webhook is added)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhooks")
    kind = models.CharField(max_length=8, choices=WebhookKind.choices, default=WebhookKind.HTTP)
    target = models.CharField(max_length=2000)  # the URL, or the e-mail addresses (comma-separated)
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "pk"]

    def __str__(self) -> str:
        return f"{self.team.name} #{self.pk} {self.kind} {self.target[:60]}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed, or the target was refused


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook: what, how many attempts, the last answer."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.IntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"delivery {self.pk} of webhook {self.webhook_id}: {self.event} {self.status}"
