"""Fault: the Docker engine restarts. The app's tasks come back (Swarm restarts them, on new published ports),
the watcher and the log shipper follow Docker's events again and the router reconverges; after that no request to
the app fails.

Restarting the engine stops every container on the machine for ~20 s (other suites running beside this one see
their containers restarted). The restart runs detached from the test, so the engine comes back even if the test
is killed meanwhile.
"""

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import api, app_containers, make_repo, own_redis, platform_env, push_live  # noqa: F401
from tests.e2e.load import Load
from tests.e2e.test_push_to_live import get

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(600)]

DOCKER_PID_FILE = Path("/var/run/docker.pid")
REPO_DIR = Path(__file__).resolve().parents[2]

# Stops dockerd (SIGTERM, as `systemctl restart docker` does), waits for it to exit, then starts it as `make up`
# does (deploy/lib.sh ensure_docker: setsid dockerd, logging to /var/log/berth-dockerd.log). It runs detached in
# its own session, so the engine comes back even if the test is killed or times out meanwhile.
RESTART_SCRIPT = """
kill -TERM "$1" 2>/dev/null || true
for _ in $(seq 1 240); do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
source "$2/deploy/lib.sh"
ensure_docker
"""


def restart_docker_engine() -> None:
    """Restart the engine the way it was started (systemd's unit, else deploy/lib.sh's detached dockerd); return
    once the old engine is gone (the caller waits for the new one)."""
    if subprocess.run(["systemctl", "is-active", "--quiet", "docker"], capture_output=True).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=180)
        return
    pid = int(DOCKER_PID_FILE.read_text().strip())
    with open("/var/log/berth-dockerd.log", "ab") as log:
        subprocess.Popen(
            ["bash", "-c", RESTART_SCRIPT, "berth-restart-docker", str(pid), str(REPO_DIR)],
            cwd="/",
            # a plain environment: the engine outlives this test and owes it nothing
            env={"PATH": os.environ["PATH"], "HOME": "/root"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=150, interval=0.5, message="dockerd to stop")


def _engine_up() -> bool:
    from berth.runtime.client import docker_client

    try:
        return docker_client(timeout=5).info()["Swarm"]["LocalNodeState"] == "active"
    except Exception:
        return False


def _booted(name: str) -> int:
    """How many `booting` lines (one per container start of the test app) the shipper put in the app's log."""
    from berth.core.redis import redis_client
    from berth.observe.services import logs_key

    return sum(
        1
        for _, fields in redis_client().xrange(logs_key(name))
        if fields.get(b"line", b"").startswith(b"booting ")
    )


def test_after_a_docker_engine_restart_the_app_comes_back_and_no_request_fails(
    tmp_path, tenant, berth_platform
):
    from berth.observe.shipper import Shipper
    from berth.runtime.scheduler import LABEL_APP

    name = tenant.app.name
    host = f"{name}.localhost"
    repo = make_repo(tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=name)
    push_live(repo, berth_platform, name, "survivor")
    with api(berth_platform, tenant.token) as client:
        assert client.patch(
            f"/api/v1/apps/{name}/formation", json=[{"process": "web", "replicas": 2}]
        ).is_success
    wait_for(lambda: len(app_containers(name)) == 2, timeout=60, message="two replicas")
    before = {c.id for c in app_containers(name)}
    # the shipper too must follow the engine's events again: its scan is slowed so the events do the work
    shipper = Shipper(only_labels={LABEL_APP: name}).start(scan_interval=60)
    try:
        wait_for(
            lambda: _booted(name) >= 2, timeout=30, message="the shipper to ship both replicas' boot lines"
        )
        booted_before = _booted(name)

        restarted_at = time.monotonic()
        restart_docker_engine()
        wait_for(_engine_up, timeout=120, interval=1, message="the engine and its swarm to be back")
        engine_back = time.monotonic() - restarted_at

        def serving():
            try:
                return get(berth_platform.router_port, host).text.strip() == "survivor"
            except httpx.HTTPError:
                return False

        wait_for(
            lambda: len([c for c in app_containers(name) if c.id not in before]) == 2 and serving(),
            timeout=180,
            interval=1,
            message="both replicas back and routed",
        )
        routed = time.monotonic() - restarted_at
        wait_for(
            lambda: _booted(name) >= booted_before + 2,
            timeout=45,
            message="the shipper to ship the new replicas' boot lines",
        )
    finally:
        shipper.stop()
    time.sleep(12)  # past a few full reconciles of the watcher (every 3 s) after the last change
    with Load(berth_platform.router_port, host, max_seconds=15) as load:
        time.sleep(10)
    print(
        f"\nengine back after {engine_back:.0f} s, both replicas routed after {routed:.0f} s; "
        f"{load.ok} ok, {load.failed} failed"
    )
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert load.ok > 100
    health = httpx.get(f"{berth_platform.web_url}/healthz", timeout=10).json()
    assert health["status"] == "ok", health
