"""Refused dashboard forms in a real browser: the error beside the field that failed, naming the limit, with what was
typed kept and the form's section in view; nothing cut, nothing half-applied."""

import re

import pytest

from tests.dashboard.conftest import PageOpener, build_world


@pytest.fixture
def world(browser, transactional_db):
    return build_world()


@pytest.fixture
def open_page(browser, live_server, world):
    opener = PageOpener(browser, live_server.url)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


def in_view(page, selector: str) -> bool:
    return page.eval_on_selector(
        selector,
        "el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }",
    )


def test_a_too_long_app_name_is_refused_beside_the_field_never_cut(open_page):
    from berth.apps.models import App

    name = "a-very-long-application-name-40-chars-xy"
    assert len(name) == 40
    page = open_page("member")
    page.goto("/apps/new")
    page.type("#app-name", name)  # typed, key by key: the browser must not cut it either
    assert page.locator("#app-name").input_value() == name
    page.click("#app-create")
    error = page.locator("#app-name-error")
    error.wait_for()
    assert "is 40 characters; the limit is 30" in error.inner_text()
    assert page.locator("#app-name").input_value() == name
    assert page.locator("#app-name").get_attribute("aria-invalid") == "true"
    assert not App.objects.filter(name__startswith="a-very-long").exists()


def test_a_config_value_over_the_cap_is_refused_beside_the_field_with_the_section_in_view(open_page, world):
    from berth.apps.models import ConfigVar
    from berth.releases.models import Release

    releases = Release.objects.filter(app=world.app).count()
    value = "x" * (40 * 1024)
    page = open_page("member")
    page.goto("/apps/demo/")
    page.fill("#config-key", "BIG_BLOB")
    page.fill("#config-value", value)
    page.click("#config-add-submit")
    error = page.locator("#config-value-error")
    error.wait_for()
    assert "is 40,960 bytes; the limit is 32,768 bytes" in error.inner_text()
    assert in_view(page, "#config-value-error")  # the page did not jump away from it
    assert page.locator("#config-key").input_value() == "BIG_BLOB"
    assert page.locator("#config-value").input_value() == value
    assert page.locator("#messages").count() == 0  # nothing at the top of the page
    assert not ConfigVar.objects.filter(app=world.app, key="BIG_BLOB").exists()
    assert Release.objects.filter(app=world.app).count() == releases
    # corrected in place, it goes through
    page.fill("#config-value", "small")
    page.click("#config-add-submit")
    page.wait_for_url(re.compile(r".*/apps/demo/#config$"))
    assert ConfigVar.objects.get(app=world.app, key="BIG_BLOB").value == "small"


def test_an_edit_in_place_over_the_cap_comes_back_in_its_row(open_page, world):
    from berth.apps.models import ConfigVar

    page = open_page("member")
    page.goto("/apps/demo/")
    row = page.locator('tr[data-config-key="SECRET_TOKEN"]')
    row.locator('[data-action="edit"]').click()
    row.locator("textarea").fill("y" * 33_000)
    row.locator(".config-edit button[type=submit]").click()
    page.locator("#config-edit-error").wait_for()
    row = page.locator('tr[data-config-key="SECRET_TOKEN"]')
    assert "the limit is 32,768 bytes" in row.locator("#config-edit-error").inner_text()
    assert row.locator("textarea").input_value() == "y" * 33_000
    assert in_view(page, "#config-edit-error")
    assert ConfigVar.objects.get(app=world.app, key="SECRET_TOKEN").value == "s3cr3t-value"


def test_team_page_refusals_show_beside_their_fields(open_page):
    from berth.accounts.models import ApiToken, Invitation

    page = open_page("admin")
    page.goto("/teams/acme/")
    page.fill("#invite-email", "not-an-address")
    page.click("#invitation-add-submit")
    page.locator("#invite-email-error").wait_for()
    assert "is not a valid email address" in page.locator("#invite-email-error").inner_text()
    assert page.locator("#invite-email").input_value() == "not-an-address"
    assert in_view(page, "#invite-email-error")
    assert not Invitation.objects.exists()
    long_name = "n" * 101
    page.fill("#token-name", long_name)
    page.click("#token-add-submit")
    page.locator("#token-name-error").wait_for()
    assert "must be 1-100 characters" in page.locator("#token-name-error").inner_text()
    assert page.locator("#token-name").input_value() == long_name
    assert not ApiToken.objects.exists()


def test_a_too_long_team_name_is_refused_beside_the_field(open_page):
    from berth.accounts.models import Team

    page = open_page("member")
    page.goto("/teams/new")
    page.type("#team-name", "t" * 31)
    page.click("#team-new-form button[type=submit]")
    page.locator("#team-name-error").wait_for()
    assert "2-30 characters" in page.locator("#team-name-error").inner_text()
    assert page.locator("#team-name").input_value() == "t" * 31
    assert not Team.objects.filter(name__startswith="ttt").exists()


def test_a_refused_scale_shows_beside_its_row_with_the_typed_numbers(open_page, world):
    from berth.apps.models import Formation

    page = open_page("member")
    page.goto("/apps/demo/")
    page.fill("#replicas-web", "3")
    page.fill("#replicas-worker", "101")
    page.click("#formation-save")
    error = page.locator("#replicas-worker-error")
    error.wait_for()
    assert "from 0 to 100" in error.inner_text()
    assert in_view(page, "#replicas-worker-error")
    assert page.locator("#replicas-web").input_value() == "3"
    assert page.locator("#replicas-worker").input_value() == "101"
    assert Formation.objects.get(app=world.app, process="web").replicas == 1
