"""Celery tasks of berth.certs: thin, by id, safe to run twice (each attempt takes its certificate's lock and
re-reads the row)."""

from celery import shared_task

from berth.apps.models import App
from berth.certs.services import certificate_attempt, certificates_issue_due, certificates_sweep


@shared_task(name="berth.certs.sweep", acks_late=True, time_limit=15 * 60, soft_time_limit=14 * 60)
def certificates_sweep_task() -> dict:
    """Every minute (beat): new names, due issuances and renewals, the router's certificates."""
    return certificates_sweep()


@shared_task(name="berth.certs.app", acks_late=True, time_limit=10 * 60, soft_time_limit=9 * 60)
def certificates_app_task(app_id: int) -> int:
    """An app went live or gained a domain: issue what it lacks now rather than at the next sweep."""
    app = App.objects.filter(pk=app_id).select_related("team").first()
    if app is None:
        return 0  # deleted meanwhile
    return certificates_issue_due(app=app)


@shared_task(name="berth.certs.attempt", acks_late=True, time_limit=10 * 60, soft_time_limit=9 * 60)
def certificate_attempt_task(certificate_id: int) -> None:
    certificate_attempt(certificate_id=certificate_id)
