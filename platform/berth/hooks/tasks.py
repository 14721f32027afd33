"""Celery tasks of outbound webhooks: thin, by id, safe to run twice (an attempt claims its row)."""

from celery import shared_task
from django.utils import timezone

from berth.hooks.models import DeliveryStatus
from berth.hooks.selectors import deliveries_due
from berth.hooks.services import delivery_attempt


@shared_task(name="berth.hooks.deliver", acks_late=True, time_limit=120, soft_time_limit=100)
def delivery_attempt_task(delivery_id: int) -> str | None:
    """One attempt; a delivery left pending is queued again for when its retry is due."""
    delivery = delivery_attempt(delivery_id=delivery_id)
    if delivery is None:
        return None
    if delivery.status == DeliveryStatus.PENDING:
        wait = max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds())
        delivery_attempt_task.apply_async((delivery_id,), countdown=wait)
    return delivery.status


@shared_task(name="berth.hooks.retry_late", acks_late=True, time_limit=120, soft_time_limit=100)
def deliveries_late_task() -> int:
    """Celery beat: queue again the retries a restarted worker lost."""
    late = deliveries_due()
    for delivery_id in late:
        delivery_attempt_task.delay(delivery_id)
    return len(late)
