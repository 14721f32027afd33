"""Periodic sweeps of deploys: releases left `deploying` by a dead worker, replaced releases whose removal a dead
worker left undone, old one-off runs."""

import logging
import time
from datetime import timedelta

from django.utils import timezone

from berth.apps.models import App
from berth.core.locks import app_lock_held
from berth.core.redis import redis_client
from berth.core.sweep import register_sweeper
from berth.deploys.events import app_event
from berth.deploys.pipeline import build_end_with_release
from berth.deploys.retiring import RETIRE_GRACE, RETIRING_KEY
from berth.deploys.rollout import release_retire
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_set_status
from berth.runtime.oneoff import oneoff_prune
from berth.runtime.scheduler import get_scheduler

logger = logging.getLogger(__name__)


STUCK_DEPLOY_GRACE = timedelta(seconds=15)


@register_sweeper
def oneoffs_sweep() -> int:
    """Remove one-off containers nobody came back for (a day old), so runs do not pile up on the node."""
    return len(oneoff_prune(older_than=24 * 3600))


@register_sweeper
def releases_sweep() -> int:
    """Fail releases left `deploying` by a worker that died: nobody holds (renews) the app's lock any more.

    Their half-started services are removed; the live release was never touched and keeps serving.
    """
    stuck = Release.objects.select_related("app", "app__team").filter(
        status=ReleaseStatus.DEPLOYING, status_changed_at__lt=timezone.now() - STUCK_DEPLOY_GRACE
    )
    fixed = 0
    for release in stuck:
        if app_lock_held(release.app.name):
            continue  # its deploy is alive (or another one runs): not stuck
        reason = "the deploy's worker stopped (killed or lost) before the cut-over; the previous release keeps serving"
        if release_set_status(
            release=release,
            from_statuses=[ReleaseStatus.DEPLOYING],
            to_status=ReleaseStatus.FAILED,
            reason=reason,
        ):
            get_scheduler().remove(app=release.app.name, release=release.version)
            app_event(release.app.name, "release.failed", f"v{release.version} failed: {reason}")
            # its build (if a push rolled it out) ends now too, in this pass: its pusher is told at once
            build_end_with_release(release=release)
            fixed += 1
    return fixed


@register_sweeper
def retire_pending_sweep() -> int:
    """Remove the replaced releases whose background removal a killed worker left undone (noted in Redis more
    than RETIRE_GRACE ago). Returns how many releases it removed."""
    cutoff = time.time() - RETIRE_GRACE.total_seconds()
    client = redis_client()
    removed = 0
    for member in client.zrangebyscore(RETIRING_KEY, "-inf", cutoff):
        app_name, _, live = (member.decode() if isinstance(member, bytes) else member).rpartition(":")
        app = App.objects.filter(name=app_name).first()
        if app is None or not live.isdigit():
            client.zrem(RETIRING_KEY, member)  # the app is gone: its teardown removed everything
            continue
        removed += len(release_retire(app=app, live=int(live)))
    return removed
