"""The sweep of releases left `deploying` by a worker that died (berth.deploys.sweeps.releases_sweep)."""

import time
from datetime import timedelta

from berth.core.locks import app_lock
from berth.core.redis import redis_client
from berth.deploys.retiring import RETIRE_GRACE, RETIRING_KEY
from berth.deploys.rollout import process_specs
from berth.deploys.sweeps import STUCK_DEPLOY_GRACE, releases_sweep, retire_pending_sweep
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create
from django.utils import timezone

from tests.deploys.helpers import endpoints, retirements_finish


def stuck_release(app, scheduler) -> Release:
    """v2 half-started by a worker that died: deploying since before the grace, its web service up, no lock."""
    release = release_create(app=app, image="img:2", procfile={"web": "serve"}, description="", actor=None)
    Release.objects.filter(pk=release.pk).update(
        status=ReleaseStatus.DEPLOYING,
        status_changed_at=timezone.now() - STUCK_DEPLOY_GRACE - timedelta(seconds=1),
    )
    for spec in process_specs(release):
        scheduler.ensure_process(spec)
    return release


def test_a_sweep_fails_a_release_stuck_deploying_with_no_lock_holder(live_app, scheduler, memory_router):
    app = live_app.app
    serving = memory_router.endpoints(app.name)
    v2 = stuck_release(app, scheduler)
    assert releases_sweep() == 1
    v2.refresh_from_db()
    assert v2.status == ReleaseStatus.FAILED
    assert "worker stopped" in v2.status_reason
    assert [s.release for s in scheduler.services(app=app.name)] == [1]
    live_app.v1.refresh_from_db()
    assert live_app.v1.status == ReleaseStatus.LIVE
    assert memory_router.endpoints(app.name) == serving == endpoints(scheduler, app, release=1)


def test_a_sweep_leaves_a_deploy_whose_worker_still_holds_the_lock(live_app, scheduler):
    app = live_app.app
    v2 = stuck_release(app, scheduler)
    lock = app_lock(app.name, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert releases_sweep() == 0
    finally:
        lock.release()
    v2.refresh_from_db()
    assert v2.status == ReleaseStatus.DEPLOYING
    assert [s.release for s in scheduler.services(app=app.name)] == [1, 2]


def test_a_sweep_removes_the_replaced_release_a_killed_worker_left_running(live_app, deploy, scheduler):
    """The worker died between the cut-over and the end of its background removal: v1 still runs."""
    app = live_app.app
    deploy(app, image="img:2")
    retirements_finish()
    scheduler.ensure_process(process_specs(live_app.v1)[0])  # as the dead worker left it
    member = f"{app.name}:2"
    redis_client().zadd(RETIRING_KEY, {member: time.time()})
    assert retire_pending_sweep() == 0  # within the grace: the worker may still be at it
    assert sorted(s.release for s in scheduler.services(app=app.name)) == [1, 2]
    redis_client().zadd(RETIRING_KEY, {member: time.time() - RETIRE_GRACE.total_seconds() - 1})
    assert retire_pending_sweep() == 1
    assert [s.release for s in scheduler.services(app=app.name)] == [2]
    assert redis_client().zscore(RETIRING_KEY, member) is None
    assert retire_pending_sweep() == 0
