"""A build's life under pressure, end to end: one build at a time per app (a second push waits visibly, an image
deploy gets 409), a pusher that disconnects, cancellation, the build timeout, and a worker killed mid-build."""

import os
import secrets
import signal
import time

import pytest

from tests.conftest import hello_app, wait_for
from tests.e2e import test_builds_support as support
from tests.e2e.test_builds_support import (
    SLOW_DOCKERFILE,
    build_worker_pid,
    get_app_page,
    keep_transcript,
    make_repo,
    wait_build,
    wait_running_build,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

repo, api, app_name = support.repo, support.api, support.app_name  # fixtures


def write_slow(repo, seconds: int, message: str, *, fail: bool = False) -> str:
    """A slow Dockerfile app; returns the nonce its build step prints (and its step container's command holds)."""
    nonce = secrets.token_hex(4)
    dockerfile = SLOW_DOCKERFILE.format(seconds=seconds, nonce=nonce)
    if fail:
        dockerfile = dockerfile.replace("sleep 1; done", "sleep 1; done; exit 4")
    repo.remove("requirements.txt")
    repo.write({"Dockerfile": dockerfile, "app.py": hello_app(message)})
    return nonce


def step_containers(nonce: str) -> list[str]:
    """Running containers of a build step whose command holds `nonce` (the engine's intermediate containers)."""
    from berth.runtime.client import docker_client

    # ignore_removed: a container listed, then gone before it is inspected (as the one waited for may be), is skipped
    running = docker_client().containers.list(filters={"status": "running"}, ignore_removed=True)
    return [c.id for c in running if nonce in " ".join(c.attrs["Config"].get("Cmd") or [])]


def deploy_stdlib(repo, message: str) -> str:
    repo.remove("Dockerfile")
    repo.write({"requirements.txt": "", "app.py": hello_app(message)})
    sha = repo.commit(message)
    push = repo.push()
    assert push.returncode == 0, push.stderr
    return sha


def test_a_second_push_waits_visibly_then_builds_and_an_image_deploy_meanwhile_is_409(
    tmp_path, repo, berth_platform, tenant, api
):
    app = repo.app
    write_slow(repo, 8, "first", fail=True)
    repo.commit("slow and failing")
    first = repo.push_in_background()
    first.wait_line("slow step 1 ", timeout=120)  # the build's own output reaches the pusher while it runs
    assert first.process.poll() is None

    running = wait_running_build(api, app)
    answer = api.post(f"/apps/{app}/deploys", json={"image": "127.0.0.1:5999/whatever:1"})
    assert answer.status_code == 409, answer.text
    assert f"build {running['id']} of {app} is still building" in answer.json()["detail"]

    other = make_repo(tmp_path, berth_platform, tenant, app, name="other")
    other.write({"requirements.txt": "", "app.py": hello_app("second")})
    other.commit("second")
    second = other.push_in_background()
    waiting = second.wait_line(f"waiting for the previous push of {app} to finish", timeout=60)
    assert not any("queued" in line for line in second.lines)

    first_out = first.finish(timeout=120)
    assert first.process.returncode != 0
    assert "remote: error: the Dockerfile's step 2 failed" in first_out
    second_out = second.finish(timeout=300)
    keep_transcript("concurrent-first", first_out)
    keep_transcript("concurrent-second-waited", second_out)
    assert second.process.returncode == 0, second_out
    queued = second.wait_line("-----> Build", timeout=1)
    assert waiting < queued < second.wait_line("-----> Released v1", timeout=1)
    assert get_app_page(berth_platform.router_port, app).text == "second\n"
    assert [b["status"] for b in api.get(f"/apps/{app}/builds").json()] == ["succeeded", "failed"]


def test_a_pusher_that_disconnects_does_not_stop_its_build(repo, berth_platform, api):
    app = repo.app
    write_slow(repo, 6, "survivor")
    sha = repo.commit("slow")
    push = repo.push_in_background()
    push.wait_line("slow step 2 ", timeout=120)
    build = wait_running_build(api, app)
    push.kill()

    done = wait_build(api, app, build["id"], timeout=300)
    assert done["status"] == "succeeded", done
    log = api.get(f"/apps/{app}/builds/{build['id']}").json()["log"]
    assert "slow step 6 " in log and "-----> Released v1" in log
    assert get_app_page(berth_platform.router_port, app).text == "survivor\n"
    # git would have moved the ref after the hook answered; with the hook gone the worker did, from the
    # objects the hook kept out of the aborted push's quarantine: the repository matches what runs
    assert f"-----> The pusher left; refs/heads/main moved to {sha[:7]} here" in log
    assert repo.remote_head() == sha
    repo.write({"app.py": hello_app("next")})
    repo.commit("next")
    again = repo.push()
    assert again.returncode == 0, again.stderr
    assert "-----> Released v2" in again.stderr
    assert get_app_page(berth_platform.router_port, app).text == "next\n"


def test_cancelling_a_running_build_stops_it_and_refuses_the_push(repo, berth_platform, api):
    app = repo.app
    stable = deploy_stdlib(repo, "stable")
    nonce = write_slow(repo, 60, "never")
    repo.commit("slow")
    push = repo.push_in_background()
    push.wait_line("slow step 2 ", timeout=120)
    build = wait_running_build(api, app, after=1)
    started = time.monotonic()
    answer = api.post(f"/apps/{app}/builds/{build['id']}/cancel")
    assert answer.status_code == 200, answer.text

    done = wait_build(api, app, build["id"], timeout=30)
    assert done["status"] == "cancelled", done
    assert time.monotonic() - started < 10
    out = push.finish(timeout=30)
    keep_transcript("cancelled", out)
    assert push.process.returncode != 0
    assert "remote: error: the build was cancelled" in out
    assert f"remote: error: build {build['id']} cancelled; the push was not accepted" in out
    assert "slow step 20 " not in out  # the step was stopped, not waited for
    wait_for(lambda: not step_containers(nonce), timeout=15, message="the engine to stop the build step")
    assert repo.remote_head() == stable
    assert get_app_page(berth_platform.router_port, app).text == "stable\n"
    again = api.post(f"/apps/{app}/builds/{build['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


@pytest.fixture
def short_build_timeout(monkeypatch):
    """The platform's processes start with BERTH_BUILD_TIMEOUT=10 (list this fixture before berth_platform)."""
    monkeypatch.setenv("BERTH_BUILD_TIMEOUT", "10")


def test_a_build_past_its_timeout_fails_with_a_clear_line(short_build_timeout, berth_platform, repo, api):
    assert berth_platform.env["BERTH_BUILD_TIMEOUT"] == "10"
    app = repo.app
    stable = deploy_stdlib(repo, "stable")
    nonce = write_slow(repo, 60, "too slow")
    repo.commit("slow")
    started = time.monotonic()
    push = repo.push()
    keep_transcript("timeout", push.stderr)
    assert push.returncode != 0
    assert time.monotonic() - started < 40
    assert "remote: error: the build timed out after 10s" in push.stderr, push.stderr
    wait_for(lambda: not step_containers(nonce), timeout=15, message="the engine to stop the build step")
    build = api.get(f"/apps/{app}/builds").json()[0]
    assert build["status"] == "failed" and build["status_reason"] == "error: the build timed out after 10s"
    assert repo.remote_head() == stable
    assert get_app_page(berth_platform.router_port, app).text == "stable\n"


@pytest.mark.faults
def test_a_worker_killed_mid_build_is_failed_by_the_sweep_and_the_next_push_works(
    repo, berth_platform, api, monkeypatch
):
    from berth.core.sweep import sweep_stuck_work

    grace = 15
    monkeypatch.setenv(
        "BERTH_BUILD_HEARTBEAT_GRACE", str(grace)
    )  # read by the sweep, run here like beat would
    app = repo.app
    stable = deploy_stdlib(repo, "stable")
    nonce = write_slow(repo, 120, "orphan")
    repo.commit("slow")
    push = repo.push_in_background()
    push.wait_line("slow step 2 ", timeout=120)
    build = wait_running_build(api, app, after=1)
    pid = build_worker_pid(api, app, build["id"])
    assert step_containers(nonce)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # the killed process's connection to the engine closed: the engine stops the build it was running
    wait_for(lambda: not step_containers(nonce), timeout=15, message="the engine to stop the orphaned build")

    def swept():
        sweep_stuck_work()
        return api.get(f"/apps/{app}/builds/{build['id']}").json()["status"] == "failed"

    wait_for(swept, timeout=grace + 20, interval=1, message="the sweep to fail the build")
    assert time.monotonic() - killed < grace + 15
    done = api.get(f"/apps/{app}/builds/{build['id']}").json()
    assert done["status_reason"].startswith(
        f"error: the build worker {build['worker']} stopped (killed or lost)"
    )
    assert done["log"].splitlines()[-1] == done["status_reason"]
    out = push.finish(timeout=30)
    keep_transcript("worker-killed", out)
    assert push.process.returncode != 0
    assert f"remote: error: the build worker {build['worker']} stopped" in out
    assert repo.remote_head() == stable
    assert get_app_page(berth_platform.router_port, app).text == "stable\n"

    # the pool replaced its process: the next push builds and deploys
    deploy_stdlib(repo, "after the kill")
    assert get_app_page(berth_platform.router_port, app).text == "after the kill\n"
