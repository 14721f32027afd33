"""The add-ons panel in a real browser against the whole running platform and a real PostgreSQL add-on on the
swarm (issue 14): the owner creates one from the app page, sees it running with its version, node and
DATABASE_URL, captures a backup and verifies it (a restore into a throwaway server), is refused a destroy without
the add-on's name typed, then destroys it with a final backup kept. A viewer of the same team sees the add-on and
its backups but no button. The add-on's service and volume are removed afterwards whatever happened."""

import re

import pytest
from berth.accounts.services import membership_add
from berth.addons.images import addon_image_build
from berth.addons.models import Addon, AddonBackup
from berth.addons.selectors import addon_spec
from berth.runtime.addons import AddonRuntimeError, addon_service_exists, addon_service_remove
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
SLOW_MS = 240_000  # a create waits for the server to answer; a capture and its verification run containers


@pytest.fixture
def addon_cleanup(tenant):
    """Whatever add-on the test made in the tenant's team goes, service and volume, however the test ended."""
    for kind in ("postgres",):
        addon_image_build(kind, echo=lambda line: None)  # reuses an image whose recipe is current
    yield
    for addon in Addon.objects.filter(team=tenant.team):
        try:
            addon_service_remove(addon_spec(addon))
        except AddonRuntimeError:
            pass  # reported by the assertion that failed first


def test_the_owner_creates_backs_up_verifies_and_destroys_an_addon_a_viewer_only_sees(
    page, tenant, addon_cleanup
):
    url = f"/apps/{tenant.app.name}/"
    page.goto(url)
    panel = page.locator("#addons")
    assert panel.locator("#no-addons").is_visible()

    page.select_option("#addon-kind", "postgres")
    with page.expect_navigation(url=re.compile(r".*#addons$"), timeout=SLOW_MS):
        page.click("#addon-create-submit")
    addon = Addon.objects.get(team=tenant.team)
    row = page.locator(f"li.addon[data-addon='{addon.name}']")
    assert "DATABASE_URL points at it" in page.locator("#messages").inner_text()
    assert row.locator("[data-field='addon-state']").inner_text() == "running"
    assert re.fullmatch(r"15\.\S+", row.locator("[data-field='addon-version']").inner_text())
    assert row.locator("[data-field='addon-node']").inner_text() not in ("", "—")
    assert row.locator("[data-field='addon-config-var']").inner_text() == "DATABASE_URL"
    assert tenant.app.name in row.locator("[data-field='addon-attachments']").inner_text()
    assert row.locator("[data-field='addon-size']").inner_text().endswith("MB")

    with page.expect_navigation(timeout=SLOW_MS):
        row.locator("[data-action='capture-backup']").click()
    backup_row = page.locator("tr[data-backup='b001']")
    assert backup_row.locator("[data-field='backup-state']").inner_text() == "captured"
    with page.expect_navigation(timeout=SLOW_MS):
        backup_row.locator("[data-action='verify-backup']").click()
    assert (
        page.locator("tr[data-backup='b001'] [data-field='backup-state']").inner_text()
        == "verified by a restore"
    )
    assert page.locator("[data-field='addon-alarm']").count() == 0

    # a viewer of the team: the same panel, no button
    viewer = get_user_model().objects.create_user(
        username="watcher", email="w@example.test", password="pw-123456"
    )
    membership_add(team=tenant.team, user=viewer, role="viewer", actor=tenant.user)
    context = page.context.browser.new_context(base_url=page.url.split("/apps/")[0])
    try:
        other = context.new_page()
        other.goto("/login/")
        other.fill("#id_username", "watcher")
        other.fill("#id_password", "pw-123456")
        other.click("#login-submit")
        other.wait_for_url(re.compile(r".*/apps/$"))
        other.goto(url)
        seen = other.locator(f"li.addon[data-addon='{addon.name}']")
        assert seen.locator("[data-field='addon-state']").inner_text() == "running"
        assert other.locator("tr[data-backup='b001']").count() == 1
        for action in ("capture-backup", "verify-backup", "restore-backup", "destroy-addon"):
            assert other.locator(f"[data-action='{action}']").count() == 0
        assert other.locator("#addon-create").count() == 0
    finally:
        context.close()

    # a destroy without the add-on's name typed changes nothing
    page.fill(f"#destroy-addon-{addon.name}", tenant.app.name)
    with page.expect_navigation(timeout=SLOW_MS):
        page.click(f"li.addon[data-addon='{addon.name}'] [data-action='destroy-addon']")
    assert f"type the add-on's name ({addon.name}) to confirm" in page.locator("#messages").inner_text()
    assert addon_service_exists(addon_spec(addon))

    page.fill(f"#destroy-addon-{addon.name}", addon.name)
    with page.expect_navigation(timeout=SLOW_MS):
        page.click(f"li.addon[data-addon='{addon.name}'] [data-action='destroy-addon']")
    final = AddonBackup.objects.filter(team=tenant.team, trigger="final").get()
    assert (
        f"Destroyed {addon.name}; its final backup is {addon.name}/{final.name}."
        in page.locator("#messages").inner_text()
    )
    assert page.locator("#no-addons").is_visible()
    assert not Addon.objects.filter(team=tenant.team).exists()
    assert not addon_service_exists(addon_spec(addon))
