"""Scheduled jobs follow each live release's app.json (its `cron` section, berth.builds.manifest)."""

import logging

from django.dispatch import receiver

from berth.deploys.signals import build_released
from berth.jobs.services import cron_jobs_from_manifest
from berth.observe.services import event_record

logger = logging.getLogger(__name__)


@receiver(build_released)
def keep_manifest_jobs(sender, app, manifest_cron=None, actor=None, **kwargs) -> None:
    # None: the release's tree has no `cron` section (or no app.json): jobs made from an earlier one stay
    if manifest_cron is None:
        return
    try:
        added, removed = cron_jobs_from_manifest(app=app, entries=manifest_cron, actor=actor)
    except Exception as exc:  # noqa: BLE001 - the release is live already; the jobs are told, not the deploy failed
        logger.exception("app.json jobs of %s", app.name)
        event_record(app=app.name, kind="cron.failed", message=f"app.json's cron section not applied: {exc}")
        return
    if added or removed:
        event_record(
            app=app.name, kind="cron.manifest", message=f"app.json: {added} job(s) added, {removed} removed"
        )
