"""Reads of outbound webhooks: a team's webhooks, a webhook's delivery log, the deliveries whose retry is late."""

from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from berth.accounts.models import Team
from berth.hooks.models import DeliveryStatus, Webhook, WebhookDelivery


def webhooks_for_team(team: Team) -> QuerySet[Webhook]:
    return Webhook.objects.filter(team=team).order_by("pk")


def deliveries_for_webhook(webhook: Webhook, limit: int = 50) -> list[WebhookDelivery]:
    return list(webhook.deliveries.order_by("-pk")[:limit])


def deliveries_due(*, now: datetime | None = None, late_seconds: int = 30, limit: int = 500) -> list[int]:
    """Pending deliveries due for `late_seconds` already: their queued retry was lost (a worker restart)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=late_seconds)
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff
        ).values_list("pk", flat=True)[:limit]
    )
