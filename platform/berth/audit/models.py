from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One state change made through a service: who, in which team, what, on what, from where.

    `data` holds names and numbers only (config keys, never their values).
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # a team's feed and audit log are read newest first, a page at a time
        indexes = [models.Index(fields=["team", "-created_at", "-id"], name="audit_team_newest_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
