"""Fault: Redis (broker, build logs, locks, channels) restarts, while idle and in the middle of a deploy.
The platform must recover on its own: no build or release left in flight, the app serving, the next push live.

The platform runs on a Redis of this test's own, restarted by PID; the machine's shared Redis is never touched."""

import subprocess
import time

import httpx
import pytest
import redis
from berth.operations.exposition import QUEUES

from tests.conftest import wait_for
from tests.e2e.faults_support import (  # noqa: F401  (fixtures)
    exited,
    make_repo,
    own_redis,
    platform_env,
    push_live,
    respawns,
    run_respawned,
)
from tests.e2e.test_push_to_live import get, git, write_app

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(600)]


def _in_flight(app) -> list[str]:
    from berth.builds.models import Build
    from berth.releases.models import Release

    return [
        f"build {b.pk} {b.status}" for b in Build.objects.filter(app=app, status__in=["queued", "building"])
    ] + [
        f"v{r.version} {r.status}"
        for r in Release.objects.filter(app=app, status__in=["pending", "built", "deploying"])
    ]


def _broker_idle(url: str) -> bool:
    """No task queued and none running, read twice a second apart, each time in one transaction: kombu keeps a
    delivered message in its `unacked` hash until the task acks (and between a queue and that hash for a moment)."""
    broker = redis.Redis.from_url(url)
    try:
        for attempt in range(2):
            if attempt:
                time.sleep(1)
            pipe = broker.pipeline(transaction=True)
            pipe.hlen("unacked")
            for queue in QUEUES:
                pipe.llen(queue)
            if any(pipe.execute()):
                return False
        return True
    finally:
        broker.close()


def _redis_ok(platform) -> bool:
    try:
        return httpx.get(f"{platform.web_url}/healthz", timeout=10).json()["checks"]["redis"] == "ok"
    except (httpx.HTTPError, ValueError):
        return False


def test_redis_restarted_while_idle_the_platform_recovers_and_the_next_push_goes_live(
    tmp_path,
    tenant,
    berth_platform,
    own_redis,  # noqa: F811  (the fixture imported above)
):
    name = tenant.app.name
    repo = make_repo(tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=name)
    push_live(repo, berth_platform, name, "before the restart")
    # idle: the push returns once the release serves, while its task is still ending (it is acknowledged after it
    # ran); Redis going away before that ack is the other test's case (the worker exits and is started again),
    # and here it hung the next push until the timeout, twice in seven runs of make test
    wait_for(lambda: _broker_idle(own_redis.url), timeout=60, message="the worker to have no task left")

    own_redis.restart(down_for=2)

    wait_for(lambda: _redis_ok(berth_platform), timeout=30, message="/healthz to see Redis again")
    assert get(berth_platform.router_port, f"{name}.localhost").text.strip() == "before the restart"
    push_live(repo, berth_platform, name, "after the restart")
    assert _in_flight(tenant.app) == []


def test_redis_restarted_during_a_deploy_leaves_nothing_stuck_and_the_next_push_goes_live(
    tmp_path,
    tenant,
    berth_platform,
    own_redis,  # noqa: F811  (the fixture imported above)
):
    from berth.core.sweep import sweep_stuck_work
    from berth.releases.models import Release

    name = tenant.app.name
    host = f"{name}.localhost"
    # the worker as deploy/Procfile runs it: Celery 5.7's worker exits ("Unrecoverable error", kombu's restore of
    # the running task's unacked message on a closed connection) when the broker goes away while a task runs;
    # deploy/respawn.sh starts it again instead of honcho stopping the whole platform
    run_respawned(berth_platform, "worker")
    repo = make_repo(tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=name)
    push_live(repo, berth_platform, name, "v1")

    write_app(repo, "v2")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v2")
    push = subprocess.Popen(
        ["git", "push", "berth", "main"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            lambda: Release.objects.filter(app=tenant.app, version=2, status="deploying").exists(),
            timeout=120,
            interval=0.05,
            message="v2 to be deploying",
        )
        own_redis.restart(down_for=2)
        _, stderr = push.communicate(timeout=300)
    finally:
        if push.poll() is None:
            push.kill()
    print(f"\npush during the Redis restart: exit {push.returncode}\n{stderr[-1500:]}")
    assert "Traceback" not in stderr, "the pusher is shown a Python traceback from the git hook"

    # whatever the outcome of that push, nothing may stay in flight (the sweep may be needed, as in production)
    def settled():
        sweep_stuck_work()
        return not _in_flight(tenant.app)

    wait_for(settled, timeout=120, interval=2, message=f"nothing in flight (still {_in_flight(tenant.app)})")
    # the app serves the release that is live (the watcher's full reconcile runs every few seconds)
    live = Release.objects.get(app=tenant.app, status="live")
    told = "accepted" if push.returncode == 0 else "refused"
    assert (push.returncode == 0) == (live.version == 2), f"the push was {told}, yet v{live.version} is live"

    def serving_live():
        try:
            return get(berth_platform.router_port, host).text.strip() == f"v{live.version}"
        except httpx.HTTPError:
            return False

    wait_for(serving_live, timeout=25, interval=0.5, message=f"the router to serve the live v{live.version}")
    # and the platform works as before, with no process stopped for good: the next push goes live
    started = time.monotonic()
    push_live(repo, berth_platform, name, "v3")
    print(
        f"next push live in {time.monotonic() - started:.1f} s; "
        f"the worker was started again {respawns(berth_platform, 'worker')} time(s) by deploy/respawn.sh"
    )
    assert exited(berth_platform) == []
    assert _in_flight(tenant.app) == []
