"""Maintenance mode end to end below the platform's processes: the API and service switch the real router (HAProxy
through its runtime API) for every hostname of the app, follow its domains, and leave nothing behind."""

import httpx
import pytest
from berth.apps.models import App
from berth.apps.services import MAINTENANCE_PAGE, app_destroy, domain_add, domain_remove
from berth.audit.models import AuditEvent
from berth.deploys.rollout import app_route

from tests.conftest import free_port
from tests.support.backends import start_backend


@pytest.fixture
def live(router, settings, make_user, make_team, make_app, token_client):
    """An app `shop` routed by a real HAProxy to a real backend, and an API client of its team's owner."""
    settings.BERTH_ROUTER = "haproxy"
    settings.BERTH_APPS_DOMAIN = "localhost"
    backend = start_backend("web", port=free_port())
    owner = make_user("shop-owner")
    app = make_app("shop", team=make_team(owner=owner), actor=owner)
    app_route(app=app, endpoints=[backend.endpoint])
    yield app, token_client(owner), backend
    backend.stop()


def get(router, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{router.port}/", headers={"Host": host}, timeout=10)


def test_maintenance_through_the_api_covers_every_hostname_and_follows_domains(
    router, live, django_capture_on_commit_callbacks
):
    app, api, backend = live
    with django_capture_on_commit_callbacks(execute=True):
        domain_add(app=app, hostname="www.shop.test", actor=None)
    app_route(app=app, endpoints=[backend.endpoint])
    assert get(router, "www.shop.test").text == "web"

    answer = api.patch("/api/v1/apps/shop", {"maintenance": True}, format="json")
    assert answer.status_code == 200 and answer.json()["maintenance"] is True
    for host in ("shop.localhost", "www.shop.test"):
        served = get(router, host)
        assert served.status_code == 503 and served.text == MAINTENANCE_PAGE
        assert served.headers["retry-after"]
    # a domain added meanwhile is in maintenance as soon as it is routed; a removed one leaves the map
    with django_capture_on_commit_callbacks(execute=True):
        domain_add(app=app, hostname="shop.example.test", actor=None)
    app.refresh_from_db()
    app_route(app=app, endpoints=[backend.endpoint])
    assert get(router, "shop.example.test").status_code == 503
    with django_capture_on_commit_callbacks(execute=True):
        domain_remove(domain=app.domains.get(hostname="shop.example.test"), actor=None)
    assert "shop.example.test" not in router.paths.maintenance_map.read_text()

    own = "<!doctype html><h1>Upgrading the shop</h1>"
    answer = api.patch("/api/v1/apps/shop", {"maintenance_page": own}, format="json")
    assert answer.status_code == 200 and answer.json()["maintenance_page"] == own
    assert get(router, "shop.localhost").text == own
    assert (
        api.patch("/api/v1/apps/shop", {"maintenance": False}, format="json").json()["maintenance"] is False
    )
    assert get(router, "shop.localhost").text == "web" and get(router, "www.shop.test").text == "web"
    # on again: the page given last is kept
    api.patch("/api/v1/apps/shop", {"maintenance": True}, format="json")
    assert get(router, "www.shop.test").text == own
    assert [
        e.action
        for e in AuditEvent.objects.filter(target="shop", action__startswith="app.maintenance").order_by("pk")
    ] == [
        "app.maintenance.on",
        "app.maintenance.on",
        "app.maintenance.off",
        "app.maintenance.on",
    ]

    with django_capture_on_commit_callbacks(execute=True):
        app_destroy(app=App.objects.get(name="shop"), actor=None)
    assert router.paths.maintenance_map.read_text().strip() == ""


def test_bad_maintenance_input_is_refused_and_a_router_failure_changes_nothing(router, live):
    app, api, _ = live
    for body, field in (
        ({"maintenance": "yes"}, "maintenance"),
        ({"maintenance": True, "maintenance_page": "x" * (8 * 1024 + 1)}, "maintenance_page"),
        ({"maintenance": True, "maintenance_page": 5}, "maintenance_page"),
    ):
        answer = api.patch("/api/v1/apps/shop", body, format="json")
        assert answer.status_code == 400 and answer.json()["detail"].startswith(field), answer.json()
    router.process.terminate()
    router.process.wait(timeout=10)
    answer = api.patch("/api/v1/apps/shop", {"maintenance": True}, format="json")
    assert answer.status_code == 503 and "router did not take" in answer.json()["detail"]
    app.refresh_from_db()
    assert app.maintenance is False
