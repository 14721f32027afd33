"""`git push` → build → release → health-gated cut-over → routed by HAProxy, end to end on real services."""

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import NO_TLS, wait_for, write_hello_app
from tests.e2e.load import Load

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def write_app(repo: Path, message: str, *, crash: bool = False) -> None:
    write_hello_app(repo, message, mode="crash" if crash else "")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300, check=check)


def commit_and_push(repo: Path, message: str, **kwargs) -> subprocess.CompletedProcess:
    write_app(repo, message, **kwargs)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "push", "berth", "main", check=False)


def get(router_port: int, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{router_port}/", headers={"Host": host}, timeout=10, verify=NO_TLS)


def test_push_builds_releases_and_routes_then_redeploys_without_dropping_requests(
    repo, tenant, berth_platform
):
    from berth.core.redis import redis_client
    from berth.observe.services import events_key
    from berth.releases.models import Release
    from berth.runtime.scheduler import get_scheduler

    app = tenant.app
    host = f"{app.name}.localhost"
    first = commit_and_push(repo, "version one")
    assert first.returncode == 0, first.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    assert "remote: -----> Python app detected" in first.stderr
    assert "remote: -----> Released v1" in first.stderr
    assert get(berth_platform.router_port, host).text.strip() == "version one"

    with Load(berth_platform.router_port, host) as load:
        time.sleep(1)
        second = commit_and_push(repo, "version two")
        time.sleep(1)
    assert second.returncode == 0, second.stderr
    assert "remote: -----> Released v2" in second.stderr
    assert load.failed == 0, (load.failed, load.ok, load.errors[:5])
    assert load.ok > 50
    assert {"version one", "version two"} <= load.bodies
    assert get(berth_platform.router_port, host).text.strip() == "version two"
    statuses = dict(Release.objects.filter(app=app).values_list("version", "status"))
    assert statuses == {1: "superseded", 2: "live"}
    # the push answered once v2 served; v1's containers stop in the background, reported as an event
    scheduler = get_scheduler()
    wait_for(
        lambda: [s.release for s in scheduler.services(app=app.name)] == [2],
        timeout=60,
        message="v1's services to be removed",
    )

    def retired_reported() -> bool:
        events = redis_client().xrange(events_key(app.name))
        return any(f[b"kind"] == b"release.retired" and b"v1" in f[b"message"] for _, f in events)

    # the event follows once its containers are gone too (their stop grace)
    wait_for(retired_reported, timeout=60, message="the release.retired event of v1")


def test_a_release_that_never_gets_healthy_is_rolled_back_and_the_old_one_serves_every_request(
    repo, tenant, berth_platform
):
    from berth.releases.models import Release

    host = f"{tenant.app.name}.localhost"
    assert commit_and_push(repo, "stable").returncode == 0
    with Load(berth_platform.router_port, host) as load:
        broken = commit_and_push(repo, "broken", crash=True)
    assert broken.returncode != 0
    assert "remote: error:" in broken.stderr
    assert "previous release keeps serving" in broken.stderr
    assert load.failed == 0 and load.ok > 20, (load.failed, load.errors[:5])
    assert load.bodies == {"stable"}
    assert get(berth_platform.router_port, host).text.strip() == "stable"
    failed = Release.objects.get(app=tenant.app, version=2)
    assert failed.status == "failed"
    assert "booting broken" in failed.status_reason  # the app's last lines are kept with the reason
    # the repository still matches what runs: the rejected commit did not land
    remote_head = git(repo, "ls-remote", "berth", "refs/heads/main").stdout.split()[0]
    assert remote_head == git(repo, "rev-parse", "HEAD~1").stdout.strip()
