"""Fault: the Celery worker is SIGKILLed (with its pool) in the middle of a build."""

import subprocess
import time

import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import kill_tree, make_repo, own_redis, platform_env  # noqa: F401  (fixtures)
from tests.e2e.test_push_to_live import commit_and_push, get, git, write_app

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(420)]

# a build that is still running when the worker dies: the RUN step takes far longer than the kill needs
SLOW_DOCKERFILE = """\
FROM berth/stack:bookworm
RUN sleep 60
CMD ["python3", "-m", "http.server", "8000"]
"""


def test_a_build_whose_worker_is_killed_fails_the_pusher_is_told_and_the_next_push_works(
    tmp_path, tenant, berth_platform
):
    from berth.builds.models import Build, BuildStatus
    from berth.core.sweep import sweep_stuck_work

    repo = make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=tenant.app.name
    )
    (repo / "Dockerfile").write_text(SLOW_DOCKERFILE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "slow")
    push = subprocess.Popen(
        ["git", "push", "berth", "main"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        build = wait_for(
            lambda: Build.objects.filter(app=tenant.app, status=BuildStatus.BUILDING).first(),
            timeout=60,
            message="the build to start",
        )
        time.sleep(2)  # inside the build proper (the slow RUN), not at its first line
        kill_tree(berth_platform.processes["worker"])
        killed_at = time.monotonic()

        # the sweep (run by beat every minute in production) fails the build once its heartbeat is stale
        def swept():
            sweep_stuck_work()
            build.refresh_from_db()
            return build.status != BuildStatus.BUILDING

        wait_for(swept, timeout=120, interval=2, message="the sweep to fail the build")
        assert build.status == BuildStatus.FAILED
        assert "killed or lost" in build.status_reason
        # the pusher, still following the build's stream, hears it and the push is refused
        _, stderr = push.communicate(timeout=60)
        told_after = time.monotonic() - killed_at
    finally:
        if push.poll() is None:
            push.kill()
    assert push.returncode != 0
    assert "killed or lost" in stderr, stderr[-2000:]
    assert "the push was not accepted" in stderr
    print(f"\nthe pusher was told {told_after:.0f} s after the kill (heartbeat grace 45 s)")
    assert told_after < 120
    assert not Build.objects.filter(app=tenant.app, status__in=["queued", "building"]).exists()

    # a worker comes back (the supervisor's job): the next push builds and goes live
    berth_platform.start("worker")
    (repo / "Dockerfile").unlink()
    pushed = commit_and_push(repo, "after the crash")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert "Released v1" in pushed.stderr
    assert get(berth_platform.router_port, f"{tenant.app.name}.localhost").text.strip() == "after the crash"


SLOW_BOOT = (
    "import time\ntime.sleep(40)  # the deploy waits for this app to answer: the worker dies meanwhile\n"
)


def test_a_deploy_whose_worker_is_killed_ends_failed_the_old_release_serves_and_the_next_push_works(
    tmp_path, tenant, berth_platform
):
    from berth.builds.models import Build
    from berth.core.sweep import sweep_stuck_work
    from berth.releases.models import Release

    host = f"{tenant.app.name}.localhost"
    repo = make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=tenant.app.name
    )
    assert commit_and_push(repo, "v1").returncode == 0
    write_app(repo, "v2")
    app_py = repo / "app.py"
    app_py.write_text(SLOW_BOOT + app_py.read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v2")
    push = subprocess.Popen(
        ["git", "push", "berth", "main"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            lambda: Release.objects.filter(app=tenant.app, version=2, status="deploying").exists(),
            timeout=120,
            message="v2 to be deploying",
        )
        time.sleep(3)
        kill_tree(berth_platform.processes["worker"])
        killed_at = time.monotonic()
        assert get(berth_platform.router_port, host).text.strip() == "v1"

        def settled():
            sweep_stuck_work()
            return not Release.objects.filter(
                app=tenant.app, status__in=["pending", "built", "deploying"]
            ).exists()

        wait_for(settled, timeout=90, interval=2, message="no release left deploying")
        # the build ends with its release (deploys.pipeline), not a heartbeat grace later: the pusher is told now
        _, stderr = push.communicate(timeout=30)
        told_after = time.monotonic() - killed_at
    finally:
        if push.poll() is None:
            push.kill()
    assert push.returncode != 0 and "killed or lost" in stderr, stderr[-2000:]
    assert "the push was not accepted" in stderr
    print(
        f"\nthe pusher was told {told_after:.0f} s after the kill (app lock TTL 30 s, stuck-deploy grace 15 s)"
    )
    assert told_after < 60
    assert Build.objects.get(app=tenant.app, release__version=2).status == "failed"
    assert get(berth_platform.router_port, host).text.strip() == "v1"

    berth_platform.start("worker")
    started = time.monotonic()
    pushed = commit_and_push(repo, "v3")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert time.monotonic() - started < 120
    assert get(berth_platform.router_port, host).text.strip() == "v3"


def test_a_failed_releases_build_is_ended_only_once_its_worker_is_silent(db):
    """deploys.pipeline: the build of a release the deploys' sweep failed ends at once with the reason on its
    stream, unless its worker still beats (a live worker fails its own build, with its own last lines)."""
    import secrets
    from datetime import timedelta

    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from berth.builds import services as builds
    from berth.builds.models import Build, BuildStatus
    from berth.deploys.pipeline import builds_of_failed_releases_sweep
    from berth.releases.services import release_create, release_set_status
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    user = get_user_model().objects.create_user(username="dev", password="pw-123456")
    app = app_create(
        team=team_create(name="devs", actor=user), name="t-sweep-" + secrets.token_hex(3), actor=user
    )
    release = release_create(
        app=app, image="berth/x:1", procfile={"web": "run"}, description="d", actor=user, status="deploying"
    )
    build = Build.objects.create(
        app=app, source=Build.Source.GIT, status=BuildStatus.BUILDING, release=release, worker="w:1"
    )
    assert release_set_status(
        release=release,
        from_statuses=["deploying"],
        to_status="failed",
        reason="worker stopped (killed or lost)",
    )
    stream = builds.log_stream(build)
    try:
        Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())
        assert builds_of_failed_releases_sweep() == 0  # its worker beat just now: left to it
        Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=20))
        assert builds_of_failed_releases_sweep() == 1
        build.refresh_from_db()
        assert build.status == BuildStatus.FAILED
        assert "killed or lost" in build.status_reason and "v1" in build.status_reason
        assert stream.status() == BuildStatus.FAILED
        assert stream.read_all()[-1] == build.status_reason
        assert builds_of_failed_releases_sweep() == 0  # once
    finally:
        stream.redis.delete(stream.key)
