"""Run and route, end to end on the real platform: rollback, scale and restart under keep-alive load with 0 failed
requests, apps of one team reaching each other by name, unknown hosts, custom domains, and a router restarted
from nothing getting its routes back from the watcher."""

import secrets
import subprocess
import time
from types import SimpleNamespace

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import APP_PREFIX
from tests.e2e.load import Load
from tests.e2e.run_route_support import (  # noqa: F401  (_settled_containers: autouse)
    _settled_containers,
    api,
    body_of,
    events,
    get,
    make_repo,
    push,
    push_ok,
    routed,
    running_web_ports,
    wait_release,
    web_services,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture
def live(tmp_path, tenant, berth_platform):
    """The tenant's app pushed once (v1, "one") and live; its repository, host and an API client."""
    repo = make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app=tenant.app.name
    )
    first = push(repo, "one")
    assert first.returncode == 0, first.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    host = f"{tenant.app.name}.localhost"
    assert body_of(berth_platform.router_port, host) == "one"
    with api(berth_platform, tenant.token) as client:
        yield SimpleNamespace(repo=repo, host=host, api=client, app=tenant.app)


def test_rollback_runs_the_old_image_and_config_through_the_cut_over_without_dropping_requests(
    live, berth_platform
):
    from berth.releases.models import Release

    name = live.app.name
    assert live.api.patch(f"/apps/{name}/config", json={"COLOR": "blue"}).status_code == 200
    wait_release(live.app, 2)
    push_ok(live.repo, "two")  # v3: new code, still blue
    assert body_of(berth_platform.router_port, live.host) == "two blue"

    with Load(berth_platform.router_port, live.host, max_seconds=60) as load:
        time.sleep(0.5)
        answer = live.api.post(f"/apps/{name}/rollback", json={"version": "v1"})
        assert answer.status_code == 201, answer.text
        assert answer.json()["version"] == 4
        wait_release(live.app, 4)
        time.sleep(0.5)
    assert load.failed == 0, (load.failed, load.ok, load.errors[:5])
    assert load.ok > 50
    assert {"two blue", "one"} <= load.bodies  # v1's image and v1's config (no COLOR)
    assert body_of(berth_platform.router_port, live.host) == "one"
    v4 = Release.objects.get(app=live.app, version=4)
    assert v4.image == Release.objects.get(app=live.app, version=1).image
    assert "COLOR" not in v4.config
    # the old services are removed in the background once v4 serves
    wait_for(
        lambda: [s.release for s in web_services(name)] == [4], timeout=60, message="the old services gone"
    )
    assert any(e["kind"] == "release.rollback" for e in events(name))
    assert any(e["kind"] == "release.live" and e["message"].startswith("v4 ") for e in events(name))

    # a release that does not exist: 404 and nothing changes
    missing = live.api.post(f"/apps/{name}/rollback", json={"version": 99})
    assert missing.status_code == 404
    assert "v99" in missing.json()["detail"]
    assert Release.objects.filter(app=live.app).count() == 4
    assert body_of(berth_platform.router_port, live.host) == "one"


def test_scale_in_place_up_and_down_with_the_router_following_and_no_failed_request(live, berth_platform):
    name = live.app.name
    before = running_web_ports(name)
    with Load(berth_platform.router_port, live.host, max_seconds=90) as load:
        time.sleep(0.5)
        answer = live.api.patch(f"/apps/{name}/formation", json=[{"process": "web", "replicas": 3}])
        assert answer.status_code == 200, answer.text
        wait_for(
            lambda: len([e for e in routed(name) if e[2] == "UP"]) == 3,
            timeout=60,
            message="3 web endpoints in rotation",
        )
        ports = running_web_ports(name)
        assert len(ports) == 3 and before <= ports  # in place: the first task kept running
        assert {port for _, port, _ in routed(name)} == ports
        time.sleep(1)
        answer = live.api.patch(f"/apps/{name}/formation", json=[{"process": "web", "replicas": 1}])
        assert answer.status_code == 200, answer.text
        wait_for(
            lambda: len(routed(name)) == 1 and len(running_web_ports(name)) == 1,
            timeout=60,
            message="down to one web endpoint",
        )
        time.sleep(0.5)
    assert load.failed == 0, (load.failed, load.ok, load.errors[:5])
    assert load.ok > 50
    assert {port for _, port, _ in routed(name)} == running_web_ports(name)
    assert len(web_services(name)) == 1  # no stray services
    wait_for(
        lambda: sum(1 for e in events(name) if e["kind"] == "scaled") == 2,
        timeout=10,
        message="2 scaled events",
    )

    # bad formations: 400, nothing changes
    for body in (
        [{"process": "worker", "replicas": 1}],
        [{"process": "web", "replicas": 1000}],
        [{"process": "web", "replicas": -1}],
        [{"process": "web", "replicas": "3"}],
    ):
        answer = live.api.patch(f"/apps/{name}/formation", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["detail"]
    assert live.api.get(f"/apps/{name}/formation").json()[0]["replicas"] == 1


def test_restart_is_rolling_and_drops_no_request(live, berth_platform):
    name = live.app.name
    assert (
        live.api.patch(f"/apps/{name}/formation", json=[{"process": "web", "replicas": 2}]).status_code == 200
    )
    wait_for(lambda: len(routed(name)) == 2, timeout=60, message="two web endpoints")
    before = running_web_ports(name)
    with Load(berth_platform.router_port, live.host, max_seconds=90) as load:
        time.sleep(0.5)
        answer = live.api.post(f"/apps/{name}/ps/restart", json={})
        assert answer.status_code == 202, answer.text
        wait_for(
            lambda: any(e["kind"] in ("restarted", "restart.failed") for e in events(name)),
            timeout=90,
            message="the restart to end",
        )
        time.sleep(0.5)
    assert [e for e in events(name) if e["kind"] == "restart.failed"] == []
    assert load.failed == 0, (load.failed, load.ok, load.errors[:5])
    assert load.ok > 50
    after = running_web_ports(name)
    assert len(after) == 2 and not (after & before)  # fresh tasks
    assert {port for _, port, _ in routed(name)} == after
    assert [(s.generation, s.replicas) for s in web_services(name)] == [(1, 2)]  # the old service is gone
    assert body_of(berth_platform.router_port, live.host) == "one"
    from berth.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="ps.restart", target=name).count() == 1  # who restarted, recorded

    # a second restart of web alone rolls on to the next generation
    assert live.api.post(f"/apps/{name}/ps/restart", json={"process": "web"}).status_code == 202
    wait_for(
        lambda: [s.generation for s in web_services(name)] == [2] and len(routed(name)) == 2,
        timeout=90,
        message="the second restart",
    )
    unknown = live.api.post(f"/apps/{name}/ps/restart", json={"process": "worker"})
    assert unknown.status_code == 400 and "worker" in unknown.json()["detail"]


def test_apps_of_one_team_reach_each_other_by_name(tmp_path, live, tenant, berth_platform):
    from berth.apps.services import app_create

    other = app_create(team=tenant.team, name=APP_PREFIX + secrets.token_hex(3), actor=tenant.user)
    repo = make_repo(tmp_path / "other", web_url=berth_platform.web_url, token=tenant.token, app=other.name)
    push_ok(repo, "hello from the other app")
    answer = get(berth_platform.router_port, live.host, f"/fetch/{other.name}:5000/")
    assert answer.status_code == 200, answer.text
    assert answer.text.strip() == "fetched: hello from the other app"


def test_unknown_host_custom_domain_and_a_router_restarted_from_nothing(live, berth_platform, router):
    from berth.routing.haproxy import haproxy_command

    unknown = get(berth_platform.router_port, "nobody.example.test")
    assert unknown.status_code == 404 and "No such app" in unknown.text

    domain = f"www.{live.app.name}.example.test"
    assert live.api.post(f"/apps/{live.app.name}/domains", json={"hostname": domain}).status_code == 201
    wait_for(
        lambda: body_of(berth_platform.router_port, domain) == "one", timeout=20, message="the custom domain"
    )

    router.process.kill()
    router.process.wait(timeout=10)
    restarted = subprocess.Popen(
        haproxy_command(router.paths), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        started = time.monotonic()
        wait_for(
            lambda: (
                body_of(berth_platform.router_port, live.host) == "one"
                and body_of(berth_platform.router_port, domain) == "one"
            ),
            timeout=15,
            interval=0.2,
            message="routes back after the router restart",
        )
        back_after = time.monotonic() - started
        assert back_after < 8, back_after  # the watcher's full reconcile runs every 3 s
        assert get(berth_platform.router_port, "nobody.example.test").status_code == 404
    finally:
        restarted.terminate()
        try:
            restarted.wait(timeout=10)
        except subprocess.TimeoutExpired:
            restarted.kill()
