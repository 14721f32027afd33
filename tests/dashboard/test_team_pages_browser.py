"""The team pages in a real browser (Debian's chromium) at desktop and phone width: the activity feed, the audit
log, the release page, the apps list with search and pages, the team and app pages; nothing wider than a phone,
no button cut off. Screenshots go to test-artifacts/ (or $BERTH_SHOTS)."""

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR
from tests.dashboard.conftest import DESKTOP, PageOpener, build_world

PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("BERTH_SHOTS") or REPO_DIR / "test-artifacts")
DIGEST = "sha256:" + "3f" * 32

# every visible button or button-looking link inside the viewport's width (none pushed off or clipped by a table)
CUT_OFF_BUTTONS = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('main button, main .button, main select')]
    .filter(b => b.offsetParent !== null && !b.closest('.visually-hidden'))
    .map(b => [b, b.getBoundingClientRect()])
    .filter(([b, r]) => r.width > 0 && (r.left < -1 || r.right > width + 1))
    .map(([b, r]) => (b.id || b.textContent.trim()) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
}"""


@pytest.fixture
def world(browser, transactional_db):
    from berth.accounts.selectors import team_members
    from berth.accounts.services import membership_role_change
    from berth.apps.services import domain_add
    from berth.deploys.formation import formation_update
    from berth.releases.services import release_create

    world = build_world()
    owner = world.users["owner"]
    release_create(
        app=world.app,
        image=f"127.0.0.1:5000/berth/demo@{DIGEST}",
        procfile={"web": "gunicorn app:app --bind 0.0.0.0:$PORT", "worker": "python worker.py"},
        description="Deploy 9f2c1e7",
        actor=owner,
        status="built",
    )
    formation_update(app=world.app, changes=[{"process": "web", "replicas": 3}], actor=owner)
    formation_update(
        app=world.app, changes=[{"process": "worker", "replicas": 2, "memory_mb": 512}], actor=owner
    )
    membership_role_change(
        membership=team_members(team=world.team).get(user=world.users["viewer"]), role="member", actor=owner
    )
    domain_add(app=world.app, hostname="shop.demo.example.test", actor=owner)
    return world


@pytest.fixture
def open_page(browser, live_server, world):
    opener = PageOpener(browser, live_server.url)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


def check_fits(page, name: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than the screen"
    assert page.evaluate(CUT_OFF_BUTTONS) == [], f"{name}: buttons cut off"


@pytest.mark.parametrize("width_name, viewport", [("phone", PHONE), ("desktop", {**DESKTOP, "width": 1280})])
def test_team_pages_fit_and_say_what_changed(open_page, world, width_name, viewport):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_page("owner", viewport)
    page.route("**/ws/**", lambda route: route.abort())  # the live server has no sockets; the pages cope

    page.goto("/teams/acme/activity")
    feed = page.locator("#activity-list").inner_text()
    # a worker's formation starts at 0 (build_world's release); memory had no limit before
    assert "scaled worker 0 → 2; worker memory MB — → 512" in feed
    assert "scaled web 1 → 3" in feed and "role of the-viewer: viewer → member" in feed
    assert "added domain shop.demo.example.test to demo" in feed and "s3cr3t" not in feed
    page.screenshot(path=str(SHOTS / f"activity-{width_name}.png"), full_page=True)
    check_fits(page, "activity")
    page.select_option("#activity-kind", "scale")
    page.click("#activity-search")
    page.wait_for_url("**kind=scale**")
    assert page.locator("#activity-list li").count() == 2

    page.goto("/teams/acme/")
    assert page.locator("#recent-activity-list li").count() >= 5
    page.screenshot(path=str(SHOTS / f"team-{width_name}.png"), full_page=True)
    check_fits(page, "team")

    page.goto("/apps/demo/")
    page.click("#releases-table a:text-is('v3')")
    page.wait_for_url("**/apps/demo/releases/3/")
    assert page.locator("#release-digest").inner_text() == DIGEST
    assert "SECRET_TOKEN" in page.locator("#config-keys").inner_text()
    page.screenshot(path=str(SHOTS / f"release-{width_name}.png"), full_page=True)
    check_fits(page, "release")
    page.click("#release-rollback button")  # the confirm() is accepted by the opener
    page.wait_for_url("**/apps/demo/#releases")
    assert page.locator("#releases-table tr[data-release='4']").count() == 1

    page.goto("/apps/demo/")
    page.screenshot(path=str(SHOTS / f"app-{width_name}.png"), full_page=True)
    check_fits(page, "app")

    page.goto("/apps/?q=dem")
    assert page.locator("#apps-table tr[data-app]").count() == 1
    page.screenshot(path=str(SHOTS / f"apps-{width_name}.png"), full_page=True)
    check_fits(page, "apps")

    page.goto("/teams/acme/audit?q=formation")
    assert page.locator("#audit-list li").count() == 2
    page.screenshot(path=str(SHOTS / f"audit-{width_name}.png"), full_page=True)
    check_fits(page, "audit")
