"""Fault: the Docker engine restarts. The app's tasks come back (Swarm restarts them, on new published ports),
the watcher follows Docker's events again and the router reconverges; after that no request to the app fails.

Restarting the engine disturbs every container on the machine, so this runs only when asked:
BERTH_FAULTS_DOCKER_RESTART=1 (and only when nothing else is using Docker)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import api, app_containers, make_repo, own_redis, platform_env, push_live  # noqa: F401
from tests.e2e.load import Load
from tests.e2e.test_push_to_live import get

pytestmark = [
    pytest.mark.docker,
    pytest.mark.faults,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("BERTH_FAULTS_DOCKER_RESTART") != "1",
        reason="restarts the Docker engine for the whole machine: set BERTH_FAULTS_DOCKER_RESTART=1",
    ),
]

DOCKER_PID_FILE = Path("/var/run/docker.pid")


def restart_docker_engine() -> None:
    """Stop dockerd (SIGTERM, as `systemctl restart docker` does) and start it again, detached from the test.

    Where dockerd runs under systemd, that is what restarts it; here it is a plain process."""
    if subprocess.run(["systemctl", "is-active", "--quiet", "docker"], capture_output=True).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=180)
        return
    pid = int(DOCKER_PID_FILE.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=90, interval=0.5, message="dockerd to stop")
    with open("/tmp/dockerd.log", "ab") as log:
        # its own session and a plain environment: the engine outlives this test and owes it nothing
        subprocess.Popen(
            ["dockerd"],
            cwd="/",
            env={"PATH": os.environ["PATH"], "HOME": "/root"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _engine_up() -> bool:
    from berth.core.docker import docker_client

    try:
        return docker_client(timeout=5).info()["Swarm"]["LocalNodeState"] == "active"
    except Exception:
        return False


def test_after_a_docker_engine_restart_the_app_comes_back_and_no_request_fails(
    tmp_path, tenant, berth_platform
):
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
    time.sleep(12)  # one full reconcile of the watcher past the last change
    converged = time.monotonic() - restarted_at
    with Load(berth_platform.router_port, host, max_seconds=15) as load:
        time.sleep(10)
    print(
        f"\nengine back after {engine_back:.0f} s, app routed after {converged:.0f} s; {load.ok} ok, {load.failed} failed"
    )
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert load.ok > 100
    health = httpx.get(f"{berth_platform.web_url}/healthz", timeout=10).json()
    assert health["status"] == "ok", health
