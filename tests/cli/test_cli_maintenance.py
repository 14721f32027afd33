"""`berth maintenance`, `maintenance:on [--page FILE]`, `maintenance:off` through the installed script against a live
server whose router is the in-memory one (the real router's behaviour: tests/routing/test_router_maintenance.py)."""

import pytest
from berth.apps.services import MAINTENANCE_PAGE
from berth.routing.router import get_router

from tests.cli.conftest import assert_one_error_line, ok

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def memory_router(settings):
    settings.BERTH_ROUTER = "memory"
    router = get_router()
    yield router
    for hostname in list(router.maintenance()):
        router.host_maintenance_remove(hostname=hostname)


def test_maintenance_on_with_a_page_and_off(cli, shop, memory_router, settings, tmp_path):
    hostname = f"shop.{settings.BERTH_APPS_DOMAIN}"
    assert ok(cli("maintenance", "-a", shop)) == "off\n"
    assert ok(cli("maintenance:on", "-a", shop)).startswith("Maintenance mode is on for shop")
    assert memory_router.maintenance() == {hostname: MAINTENANCE_PAGE}
    assert ok(cli("maintenance", "-a", shop)) == "on\n"
    page = tmp_path / "down.html"
    page.write_text("<h1>Back at noon</h1>")
    ok(cli("maintenance:on", "-a", shop, "--page", str(page)))
    assert memory_router.maintenance() == {hostname: "<h1>Back at noon</h1>"}
    assert ok(cli("maintenance:off", "-a", shop)) == "Maintenance mode is off for shop\n"
    assert memory_router.maintenance() == {}

    page.write_bytes(b"x" * (8 * 1024 + 1))
    assert_one_error_line(cli("maintenance:on", "-a", shop, "--page", str(page)), contains="larger than 8 KB")
    assert_one_error_line(
        cli("maintenance:on", "-a", shop, "--page", str(tmp_path / "nope")), contains="cannot read"
    )
    assert memory_router.maintenance() == {}
