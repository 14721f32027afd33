"""Signal receivers of berth.hooks (connected in HooksConfig.ready): an app event becomes deliveries, queued once
the transaction that recorded it commits. A failure here never reaches the deploy or build that sent the signal
(the senders use send_robust), and is logged."""

import logging

from django.db import transaction
from django.dispatch import receiver

from berth.builds.models import Build
from berth.builds.signals import build_failed, build_queued
from berth.hooks.services import event_deliveries_create
from berth.hooks.tasks import delivery_attempt_task
from berth.observe.signals import event_recorded

logger = logging.getLogger(__name__)


def _queue(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        transaction.on_commit(lambda d=delivery_id: delivery_attempt_task.delay(d))


@receiver(event_recorded, dispatch_uid="berth.hooks.app_event")
def app_event_notify(sender, app: str, kind: str, message: str, ts: str = "", **kwargs) -> None:
    _queue(event_deliveries_create(app_name=app, kind=kind, message=message, ts=ts))


@receiver(build_queued, dispatch_uid="berth.hooks.deploy_started")
def deploy_started_notify(sender, build, **kwargs) -> None:
    try:
        source = build.git_sha[:12] if getattr(build, "git_sha", "") else (build.image_ref or build.source)
        _queue(
            event_deliveries_create(
                app_name=build.app.name,
                kind="deploy.started",
                message=f"build {build.pk} of {build.app.name} started ({source})",
            )
        )
    except Exception:  # build_queued is sent with send(): a notification must never stop a build
        logger.exception("deploy.started of build %s not notified", build.pk)


@receiver(build_failed, dispatch_uid="berth.hooks.build_failed")
def build_failed_notify(sender, build, reason: str, **kwargs) -> None:
    if Build.objects.filter(pk=build.pk, release__isnull=False).exists():
        return  # its release was made and failed to roll out: deploy.failed told that already
    message = f"build {build.pk} of {build.app.name} failed: {reason.removeprefix('error: ')}"
    _queue(event_deliveries_create(app_name=build.app.name, kind="build.failed", message=message[:2000]))
