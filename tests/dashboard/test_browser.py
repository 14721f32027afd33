"""The dashboard in a real browser (Debian's chromium driven by Playwright) against pytest-django's live server.

The live server speaks HTTP only, so the pages' WebSockets fail there (the JS must cope); tests of the live parts
answer the sockets inside the browser with Playwright's route_web_socket, sending messages shaped as the
WebSocket contract says. Screenshots go to test-artifacts/ (git-ignored).
"""

import json
import re

import pytest

from tests.conftest import REPO_DIR
from tests.dashboard.conftest import DESKTOP, PASSWORD, PageOpener, build_world

ARTIFACTS = REPO_DIR / "test-artifacts"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def world(browser, transactional_db):
    return build_world()


@pytest.fixture
def open_page(browser, live_server, world):
    """Logged-in pages on the live server; JavaScript errors fail the test."""
    opener = PageOpener(browser, live_server.url)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


def visible_text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


# --- the flows ---------------------------------------------------------------------------------------------------


def test_log_in_create_an_app_and_see_it_in_the_list(open_page):
    from berth.apps.models import App

    page = open_page("member")
    page.click("#new-app")
    page.fill("#app-name", "shiny")
    page.click("#app-create")
    page.wait_for_url(re.compile(r".*/apps/shiny/$"))
    assert "Created shiny" in visible_text(page, "#messages")
    assert App.objects.get(name="shiny").team.name == "acme"
    page.click("#nav-apps")
    row = page.locator('tr[data-app="shiny"]')
    row.wait_for()
    assert row.locator('[data-field="state"]').inner_text() == "new"


def test_apps_list_follows_state_changes_without_a_reload(open_page, world):
    from berth.builds.models import Build

    page = open_page("viewer")
    state = page.locator('tr[data-app="demo"] [data-field="state"]')
    before = state.inner_text()
    build = Build.objects.create(app=world.app, source="image", image_ref="demo:v3", status="building")
    page.wait_for_function(
        "document.querySelector('tr[data-app=demo] [data-field=state]').innerText === 'building'",
        timeout=15_000,
    )
    assert before != "building"
    assert f"#{build.pk} building" in page.locator('tr[data-app="demo"] [data-field="build"]').inner_text()


def test_a_bad_app_name_shows_the_reason(open_page):
    page = open_page("member")
    page.goto("/apps/new")
    page.fill("#app-name", "-bad")
    page.click("#app-create")
    # the server's reason beside the field (no browser pattern check stands in its way)
    assert "must be 2-30 characters" in visible_text(page, "#app-name-error")
    assert page.locator("#app-name").input_value() == "-bad"


def test_config_var_is_masked_then_revealed_and_edited_in_place(open_page):
    from berth.apps.models import ConfigVar

    page = open_page("member")
    page.goto("/apps/demo/")
    page.fill("#config-key", "DATABASE_URL")
    page.fill("#config-value", "postgres://db.internal/prod")
    page.click("#config-add-submit")
    row = page.locator('tr[data-config-key="DATABASE_URL"]')
    row.wait_for()
    assert "Set DATABASE_URL; made release v3." in visible_text(page, "#messages")
    value = row.locator(".config-value")
    assert value.inner_text() == "••••••••"
    assert "postgres://db.internal/prod" not in page.content()
    row.locator('[data-action="reveal"]').click()
    page.wait_for_function(
        "document.querySelector('tr[data-config-key=DATABASE_URL] .config-value').dataset.masked === '0'"
    )
    assert value.inner_text() == "postgres://db.internal/prod"
    row.locator('[data-action="reveal"]').click()  # hide again
    assert value.inner_text() == "••••••••"
    # edit in place: the current value is fetched into the textarea
    row.locator('[data-action="edit"]').click()
    area = row.locator("textarea")
    area.wait_for()
    assert area.input_value() == "postgres://db.internal/prod"
    area.fill("postgres://db.internal/staging")
    row.locator(".config-edit button[type=submit]").click()
    page.locator("#messages").wait_for()
    assert (
        ConfigVar.objects.get(app__name="demo", key="DATABASE_URL").value == "postgres://db.internal/staging"
    )


def test_unset_asks_first_and_removes_the_var(open_page):
    from berth.apps.models import ConfigVar

    page = open_page("member")
    page.goto("/apps/demo/")
    page.locator('tr[data-config-key="SECRET_TOKEN"] [data-action="unset"]').click()
    page.locator("#no-config").wait_for()
    assert not ConfigVar.objects.filter(key="SECRET_TOKEN").exists()


def test_viewer_sees_no_edit_controls(open_page):
    page = open_page("viewer")
    page.goto("/apps/demo/")
    assert page.locator("#role-badge").inner_text() == "viewer"
    for selector in [
        "#formation-form",
        "#config-table",
        "#config-add",
        "[data-action=rollback]",
        "#deploy-form",
        "#domain-add",
        "#settings-form",
        "#destroy-form",
    ]:
        assert page.locator(selector).count() == 0, selector
    assert page.locator("#formation-readonly li").count() == 2
    page.goto("/teams/acme/")
    for selector in ["#member-add", "#invitations", "#audit", ".role-form"]:
        assert page.locator(selector).count() == 0, selector
    assert page.locator("#new-app").count() == 0


def test_scale_form_changes_the_formation(open_page):
    from berth.apps.models import Formation

    page = open_page("member")
    page.goto("/apps/demo/")
    page.fill("#replicas-worker", "3")
    page.fill("#memory_mb-web", "512")
    page.click("#formation-save")
    page.locator("#messages").wait_for()
    assert "Formation saved: web=1, worker=3." in visible_text(page, "#messages")
    assert page.locator("#replicas-worker").input_value() == "3"
    rows = {f.process: f for f in Formation.objects.filter(app__name="demo")}
    assert rows["worker"].replicas == 3 and rows["web"].memory_mb == 512


def test_rollback_button_creates_a_release(open_page):
    from berth.releases.models import Release

    page = open_page("member")
    page.goto("/apps/demo/")
    assert page.locator('tr[data-release="3"]').count() == 0
    page.click('button[data-action="rollback"][data-version="1"]')
    row = page.locator('tr[data-release="3"]')
    row.wait_for()
    assert "Rollback to v1" in row.inner_text()
    assert Release.objects.get(app__name="demo", version=3).description == "Rollback to v1"


def test_team_admin_panel_adds_a_member_and_creates_a_token(open_page):
    from berth.accounts.models import ApiToken, Membership
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="newbie", email="newbie@example.test", password=PASSWORD)
    page = open_page("admin")
    page.click("#nav-team")
    # by email: a bare username is found only among the adder's own teams
    page.fill("#member-user", "newbie@example.test")
    page.select_option("#member-role", "viewer")
    page.click("#member-add-submit")
    page.locator('tr[data-member="newbie"]').wait_for()
    assert Membership.objects.get(team__name="acme", user__username="newbie").role == "viewer"
    # the role picker submits on change
    page.select_option("#role-newbie", "member")
    page.wait_for_function(
        "document.querySelector('#messages') && document.querySelector('#messages').innerText.includes('newbie is now member')"
    )
    assert Membership.objects.get(team__name="acme", user__username="newbie").role == "member"

    page.fill("#token-name", "ci")
    page.click("#token-add-submit")
    secret = page.locator("#shown-once-secret")
    secret.wait_for()
    clear = secret.inner_text().strip()
    assert clear.startswith("berth_")
    token = ApiToken.objects.get(user__username="the-admin", name="ci")
    assert page.locator(f'li[data-token="{token.pk}"]').count() == 1
    from berth.accounts.services import token_authenticate

    assert token_authenticate(clear=clear).pk == token.pk
    page.reload()
    assert page.locator("#shown-once-secret").count() == 0  # shown once only
    assert page.locator('#audit-table tr[data-action="membership.add"]').count() >= 1


def test_team_switcher_switches_on_change(open_page, world):
    from berth.accounts.services import membership_add
    from berth.apps.services import app_create

    app_create(team=world.other, name="elsewhere", actor=world.users["outsider"])
    membership_add(team=world.other, user=world.users["member"], role="member", actor=world.users["outsider"])
    page = open_page("member")
    page.select_option("#team-select", "other")
    page.locator('tr[data-app="elsewhere"]').wait_for()
    assert page.locator('tr[data-app="demo"]').count() == 0


# --- live parts, against the WebSocket contract -------------------------------------------------------------


def line(n: int, process: str = "web", text: str | None = None, stream: str = "stdout") -> str:
    return json.dumps(
        {
            "type": "line",
            "id": f"1700000000000-{n}",
            "ts": f"2026-11-27T10:00:{n % 60:02d}Z",
            "process": process,
            "instance": f"{process}.1",
            "stream": stream,
            "line": text or f"GET /item/{n} 200",
        }
    )


def test_log_tail_pause_filter_and_search(open_page):
    sockets = []

    def handler(ws):
        sockets.append(ws)
        process = re.search(r"process=(\w+)", ws.url)
        ws.send(line(1, text="booting"))
        ws.send(line(2, text="GET / 200"))
        ws.send(line(3, "worker", "job done"))
        ws.send(json.dumps({"type": "gap", "message": "the shipper missed 2 s of web.1"}))
        if process:
            ws.send(line(10, process.group(1), f"only {process.group(1)}"))

    page = open_page("member")
    page.route_web_socket(re.compile(r".*/ws/apps/demo/logs.*"), handler)
    page.goto("/apps/demo/")
    page.wait_for_function("document.querySelectorAll('#log-lines .log-line').length === 4")
    assert page.locator("#log-status").get_attribute("data-state") == "live"
    assert "tail=200" in sockets[0].url
    # a replayed line (same stream id) is not shown twice
    sockets[0].send(line(2, text="GET / 200"))
    # pause: new lines wait; resume shows them
    page.click("#log-pause")
    sockets[0].send(line(4, text="while paused"))
    page.wait_for_function("document.querySelector('#log-count').innerText.includes('1 waiting')")
    assert page.locator("#log-lines .log-line").count() == 4
    page.click("#log-pause")
    page.wait_for_function("document.querySelectorAll('#log-lines .log-line').length === 5")
    # search within loaded lines
    page.fill("#log-search", "GET")
    assert page.locator("#log-lines .log-line:not(.filtered)").count() == 1
    assert "1 match" in visible_text(page, "#log-count")
    page.fill("#log-search", "")
    # process filter reconnects with ?process=
    page.select_option("#log-process", "worker")
    page.wait_for_function("document.querySelector('#log-lines').innerText.includes('only worker')")
    assert "process=worker" in sockets[-1].url


def test_log_tail_says_so_when_the_socket_is_refused(open_page):
    page = open_page("member")
    page.route_web_socket(re.compile(r".*/ws/apps/demo/logs.*"), lambda ws: ws.close(code=4404))
    page.goto("/apps/demo/")
    page.wait_for_function("document.querySelector('#log-status').dataset.state === 'denied'")
    assert visible_text(page, "#log-status-text") == "not allowed"


def test_health_messages_draw_charts_and_update_processes(open_page):
    sockets = []

    def health(cpu: float, memory: float) -> str:
        return json.dumps(
            {
                "type": "health",
                "processes": [
                    {
                        "id": "task-web-1",
                        "process": "web",
                        "release": 2,
                        "state": "healthy",
                        "node": "node-a",
                        "cpu_percent": cpu,
                        "memory_mb": memory,
                        "restarts": 0,
                    },
                    {
                        "id": "task-worker-1",
                        "process": "worker",
                        "release": 2,
                        "state": "crashed",
                        "node": "node-a",
                        "cpu_percent": 1.0,
                        "memory_mb": 40.0,
                        "restarts": 3,
                    },
                ],
            }
        )

    page = open_page("viewer")
    page.route_web_socket(re.compile(r".*/ws/apps/demo/events.*"), lambda ws: sockets.append(ws))
    # the rows are what `berth ps` lists (the app's state socket); health only fills in their CPU and memory
    rows = [
        {"id": f"task-{name}-1", "process": name, "release": 2, "state": status, "node": "node-a"}
        for name, status in (("web", "running"), ("worker", "crashed"))
    ]
    state = {"type": "state", "current_version": 2, "releases": [], "formation": [], "processes": rows}
    page.route_web_socket(re.compile(r".*/ws/apps/demo/state.*"), lambda ws: ws.send(json.dumps(state)))
    page.goto("/apps/demo/")
    page.wait_for_function("document.querySelector('#events-status').dataset.state === 'live'")
    for i in range(5):
        sockets[0].send(health(10.0 + i, 100.0 + 10 * i))
    sockets[0].send(
        json.dumps(
            {"type": "event", "ts": "2026-11-27T10:00:00Z", "kind": "crashed", "message": "worker.1 exited 1"}
        )
    )
    page.wait_for_function("document.querySelector('#charts').dataset.points === '5'")
    assert page.locator("#chart-cpu polyline").count() == 2
    assert page.locator("#chart-memory polyline[data-process=web]").get_attribute("points").count(",") == 5
    assert page.locator("#metrics-empty").is_hidden()
    assert (
        page.locator('#processes-body tr[data-task-id="task-worker-1"] [data-field=state]').inner_text()
        == "crashed"
    )
    assert "14.0%" in page.locator('#processes-body tr[data-task-id="task-web-1"]').inner_text()
    assert "worker.1 exited 1" in visible_text(page, "#events-list")


def test_build_page_streams_output_and_falls_back_to_the_stored_log(open_page, world):
    from berth.builds.models import Build

    build = Build.objects.create(app=world.app, source="image", image_ref="demo:v9", status="building")

    def handler(ws):
        ws.send(json.dumps({"type": "line", "line": "-----> Pulling demo:v9"}))
        ws.send(json.dumps({"type": "line", "line": "-----> Released v3"}))
        ws.send(json.dumps({"type": "end", "status": "succeeded"}))
        ws.close(code=1000)

    page = open_page("viewer")
    page.route_web_socket(re.compile(rf".*/ws/builds/{build.pk}$"), handler)
    page.goto(f"/apps/demo/builds/{build.pk}/")
    page.wait_for_function("document.querySelector('#build-status').dataset.status === 'succeeded'")
    assert visible_text(page, "#build-log").splitlines() == ["-----> Pulling demo:v9", "-----> Released v3"]
    assert "finished: succeeded" in visible_text(page, "#build-live-text")

    # no socket server at all (the live server is plain HTTP): the stored log stays, the page says why
    finished = Build.objects.create(
        app=world.app, source="image", image_ref="demo:v1", status="failed", log="error: nope"
    )
    page.goto(f"/apps/demo/builds/{finished.pk}/")
    assert visible_text(page, "#build-log") == "error: nope"


def test_nodes_page_renders_a_report_and_says_no_data_without_one(open_page, world):
    # nodes are for platform admins (berth.nodes.selectors.can_see_nodes): a team admin who is also a superuser
    world.users["admin"].is_superuser = True
    world.users["admin"].save()
    page = open_page("admin")
    report = {
        "type": "nodes",
        "nodes": [
            {
                "id": "n1",
                "hostname": "berth-1",
                "state": "ready",
                "availability": "active",
                "address": "10.0.0.1",
                "cpu_percent": 12.5,
                "memory_used_mb": 900,
                "memory_total_mb": 4000,
                "disk_used_percent": 40,
                "tasks": 7,
            }
        ],
    }
    page.route_web_socket(re.compile(r".*/ws/nodes$"), lambda ws: ws.send(json.dumps(report)))
    page.click("#nav-nodes")
    page.locator('#nodes-body tr[data-node="n1"]').wait_for()
    assert "berth-1" in visible_text(page, "#nodes-table") and "900 / 4000 MB" in visible_text(
        page, "#nodes-table"
    )

    quiet = open_page("admin")
    quiet.route_web_socket(re.compile(r".*/ws/nodes$"), lambda ws: None)  # accepted, never a message
    quiet.goto("/nodes/")
    quiet.wait_for_function(
        "document.querySelector('#nodes-empty').dataset.state === 'no-data'", timeout=15_000
    )
    assert visible_text(quiet, "#nodes-empty").startswith("No data")


# --- screenshots ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width_name, viewport", [("phone", PHONE), ("desktop", DESKTOP)])
def test_screenshots_of_the_app_page_and_the_team_panel(open_page, world, width_name, viewport):
    from berth.accounts.services import invitation_create
    from berth.apps.services import domain_add

    domain_add(app=world.app, hostname="www.example.org", actor=world.users["owner"])
    invitation_create(team=world.team, email="friend@example.test", role="member", actor=world.users["owner"])
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page("owner", viewport)

    def logs(ws):
        for n in range(1, 25):
            process = "worker" if n % 4 == 0 else "web"
            ws.send(
                line(
                    n,
                    process,
                    "job 42 finished in 0.8 s" if process == "worker" else None,
                    "stderr" if n == 13 else "stdout",
                )
            )

    def events(ws):
        for i in range(30):
            ws.send(
                json.dumps(
                    {
                        "type": "health",
                        "processes": [
                            {
                                "id": "a1b2c3d4e5",
                                "process": "web",
                                "release": 2,
                                "state": "healthy",
                                "node": "node-1",
                                "cpu_percent": 8 + (i * 7) % 13,
                                "memory_mb": 120 + (i * 3) % 25,
                                "restarts": 0,
                            },
                            {
                                "id": "f6e7d8c9b0",
                                "process": "worker",
                                "release": 2,
                                "state": "healthy",
                                "node": "node-1",
                                "cpu_percent": 3 + (i * 5) % 7,
                                "memory_mb": 60 + i,
                                "restarts": 1,
                            },
                        ],
                    }
                )
            )
        ws.send(
            json.dumps(
                {
                    "type": "event",
                    "ts": "2026-11-27T10:02:00Z",
                    "kind": "release.live",
                    "message": "v2 is live",
                }
            )
        )

    page.route_web_socket(re.compile(r".*/ws/apps/demo/logs.*"), logs)
    page.route_web_socket(re.compile(r".*/ws/apps/demo/events.*"), events)
    page.goto("/apps/demo/")
    page.wait_for_function("document.querySelector('#charts').dataset.points === '30'")
    page.wait_for_function("document.querySelectorAll('#log-lines .log-line').length === 24")
    app_shot = ARTIFACTS / f"dashboard-app-{width_name}.png"
    page.screenshot(path=str(app_shot), full_page=True)
    page.goto("/teams/acme/")
    team_shot = ARTIFACTS / f"dashboard-team-{width_name}.png"
    page.screenshot(path=str(team_shot), full_page=True)
    # at phone width nothing may push the page sideways
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    page.goto("/apps/demo/")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    assert app_shot.stat().st_size > 10_000 and team_shot.stat().st_size > 10_000

    # the other pages, for a person to look at
    from berth.builds.models import Build

    build = Build.objects.create(
        app=world.app,
        source="image",
        image_ref="registry.example:5000/demo:v3",
        status="failed",
        status_reason="cannot pull registry.example:5000/demo:v3: manifest unknown",
        log="-----> Pulling registry.example:5000/demo:v3\nerror: cannot pull registry.example:5000/demo:v3: manifest unknown",
    )
    page.goto(f"/apps/demo/builds/{build.pk}/")
    page.screenshot(path=str(ARTIFACTS / f"dashboard-build-{width_name}.png"), full_page=True)
    page.goto("/apps/")
    page.screenshot(path=str(ARTIFACTS / f"dashboard-apps-{width_name}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
