"""Fault: HAProxy is killed. Its supervisor (honcho or systemd run `router_run`) starts it again from a fresh
config; the watcher's reconcile must rebuild every route from the swarm within seconds."""

import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import make_repo, own_redis, platform_env, push_live  # noqa: F401  (fixtures)
from tests.e2e.test_push_to_live import get

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(420)]

REBUILT_WITHIN = 15  # the watcher's full reconcile runs every 10 s


def test_a_killed_router_is_started_again_and_its_routes_are_rebuilt_from_the_registry(
    tmp_path, tenant, berth_platform, router, settings
):
    from berth.routing.haproxy import haproxy_command, write_config

    repo = make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=tenant.app.name
    )
    push_live(repo, berth_platform, tenant.app.name, "routed")
    host = f"{tenant.app.name}.localhost"

    router.process.send_signal(signal.SIGKILL)
    router.process.wait(timeout=10)
    # HAProxy's workers leave with their master; until then (or after) the port may still answer briefly
    wait_for(lambda: _refused(berth_platform.router_port, host), timeout=10, message="the router to be gone")

    # what the supervisor does: `router_run` writes a fresh config (no routes) and runs HAProxy again
    restarted_at = time.monotonic()
    process = subprocess.Popen(
        haproxy_command(write_config(http_port=router.port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def served():
            try:
                return get(berth_platform.router_port, host).text.strip() == "routed"
            except httpx.HTTPError:
                return False

        wait_for(served, timeout=REBUILT_WITHIN + 10, interval=0.2, message="the routes to be rebuilt")
        rebuilt_after = time.monotonic() - restarted_at
        print(f"\nroutes rebuilt {rebuilt_after:.1f} s after HAProxy was started again")
        assert rebuilt_after < REBUILT_WITHIN
        # and stay: every request after that is served
        statuses = [get(berth_platform.router_port, host).status_code for _ in range(50)]
        assert statuses == [200] * 50
        # the health page sees the router again
        health = httpx.get(f"{berth_platform.web_url}/healthz", timeout=10).json()
        assert health["checks"]["router"] == "ok", health
    finally:
        process.terminate()
        process.wait(timeout=10)


def _refused(port: int, host: str) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=2)
    except httpx.TransportError:
        return True
    return False
