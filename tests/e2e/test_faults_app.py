"""Fault: an app's container is killed under keep-alive load with two replicas: Swarm replaces it, the router
takes it out and the new one in, and no request fails."""

import time

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import (  # noqa: F401  (fixtures)
    api,
    app_containers,
    make_repo,
    own_redis,
    platform_env,
    push_live,
)
from tests.e2e.load import Load

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(420)]


def test_killing_one_of_two_replicas_under_load_fails_no_request_and_swarm_replaces_it(
    tmp_path, tenant, berth_platform
):
    name = tenant.app.name
    repo = make_repo(tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=name)
    push_live(repo, berth_platform, name, "replicated")
    with api(berth_platform, tenant.token) as client:
        scaled = client.patch(f"/api/v1/apps/{name}/formation", json=[{"process": "web", "replicas": 2}])
    assert scaled.status_code == 200, scaled.text
    wait_for(lambda: len(app_containers(name)) == 2, timeout=60, message="two running replicas")
    time.sleep(12)  # past one full reconcile of the watcher: both replicas are in the router

    with Load(berth_platform.router_port, f"{name}.localhost", max_seconds=90) as load:
        time.sleep(2)
        victim = app_containers(name)[0]
        victim.kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: len([c for c in app_containers(name) if c.id != victim.id]) == 2,
            timeout=60,
            message="Swarm to replace the killed replica",
        )
        replaced_after = time.monotonic() - killed_at
        time.sleep(12)  # the replacement is routed by the watcher and serves some of the load
    print(f"\nreplica replaced after {replaced_after:.1f} s; {load.ok} ok, {load.failed} failed")
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert load.ok > 100
    assert load.bodies == {"replicated"}
    assert (
        httpx.get(
            f"http://127.0.0.1:{berth_platform.router_port}/",
            headers={"Host": f"{name}.localhost"},
            timeout=10,
        ).text.strip()
        == "replicated"
    )
