"""The app page's add-ons panel through Django's test client: what each role sees and may do (the API's rule for the
same action, checked on the server), the typed confirmations, the backups with their verification and the alarm.
The add-on rows are made without a server (the engine says "not running"): nothing here creates a container."""

import re

import pytest
from berth.accounts.roles import ADMIN, MEMBER, VIEWER
from berth.addons import backups
from berth.addons.models import Addon, AddonAttachment, AddonBackup, BackupState
from berth.api.permissions import PERMISSION_MAP
from berth.apps.crypto import encrypt_text
from berth.audit.models import AuditEvent
from berth.dashboard import addon_views
from django.urls import reverse
from django.utils.html import escape

pytestmark = pytest.mark.django_db


@pytest.fixture
def addon(world):
    addon = Addon.objects.create(
        team=world.team, name="pg-main", kind="postgres", password_encrypted=encrypt_text("pw")
    )
    AddonAttachment.objects.create(addon=addon, app=world.app, config_var="DATABASE_URL")
    return addon


def _backup(addon, name: str, state: str, **fields) -> AddonBackup:
    return AddonBackup.objects.create(
        team=addon.team, addon=addon, addon_name=addon.name, kind=addon.kind, name=name, state=state, **fields
    )


def _panel(html: str) -> str:
    match = re.search(r'<section class="card" id="addons">.*?</section>', html, re.S)
    assert match, "no add-ons panel on the app page"
    return match.group(0)


def _page(client) -> str:
    response = client.get(reverse("dashboard:app", kwargs={"app": "demo"}))
    assert response.status_code == 200
    return _panel(response.content.decode())


def test_the_panel_uses_the_apis_role_for_each_action():
    assert PERMISSION_MAP["api:app-addons"]["POST"] == addon_views.ROLE_CREATE == MEMBER
    assert PERMISSION_MAP["api:app-addon"]["DELETE"] == addon_views.ROLE_DESTROY == ADMIN
    assert PERMISSION_MAP["api:app-addon-backups"]["POST"] == addon_views.ROLE_CAPTURE
    assert PERMISSION_MAP["api:app-addon-backup-verify"]["POST"] == addon_views.ROLE_VERIFY
    assert PERMISSION_MAP["api:app-addon-backup-restore"]["POST"] == addon_views.ROLE_RESTORE == ADMIN
    assert PERMISSION_MAP["api:app-addon"]["GET"] == VIEWER


def test_a_viewer_sees_the_addon_and_its_backups_but_no_button(client_as, addon):
    _backup(addon, "b001", BackupState.VERIFIED, size=2048)
    panel = _page(client_as("viewer"))
    assert 'data-addon="pg-main"' in panel and ">postgres<" in panel
    assert ">DATABASE_URL<" in panel and "demo" in panel
    assert 'data-backup="b001"' in panel and "verified by a restore" in panel and "2.0 KB" in panel
    for action in ("capture-backup", "verify-backup", "restore-backup", "destroy-addon"):
        assert f'data-action="{action}"' not in panel
    assert 'id="addon-create"' not in panel


def test_a_member_creates_captures_and_verifies_but_neither_destroys_nor_restores(client_as, addon):
    _backup(addon, "b001", BackupState.CAPTURED, size=10)
    panel = _page(client_as("member"))
    assert 'id="addon-create"' in panel
    assert 'data-action="capture-backup"' in panel and 'data-action="verify-backup"' in panel
    assert 'data-action="destroy-addon"' not in panel and 'data-action="restore-backup"' not in panel


def test_an_admin_gets_destroy_and_restore(client_as, addon):
    _backup(addon, "b001", BackupState.CAPTURED, size=10)
    panel = _page(client_as("admin"))
    assert 'data-action="destroy-addon"' in panel and 'data-action="restore-backup"' in panel


def test_a_failed_or_unverified_backup_offers_no_restore(client_as, addon):
    _backup(addon, "b001", BackupState.FAILED, error="pg_dump: connection refused")
    panel = _page(client_as("admin"))
    assert "FAILED" in panel and 'data-action="restore-backup"' not in panel


def test_the_verify_failed_alarm_is_shown(client_as, addon):
    _backup(addon, "b001", BackupState.VERIFIED, size=10)
    _backup(
        addon, "b002", BackupState.VERIFY_FAILED, size=10, error="table items: 3 rows at capture, 0 restored"
    )
    panel = _page(client_as("viewer"))
    assert 'data-field="addon-alarm"' in panel
    assert "backup b002&#x27;s verification failed: table items: 3 rows at capture, 0 restored" in panel
    assert "VERIFICATION FAILED" in panel


@pytest.mark.parametrize(
    ("role", "name", "kwargs"),
    [
        ("viewer", "dashboard:addon-create", {}),
        ("member", "dashboard:addon-destroy", {"addon": "pg-main"}),
        ("viewer", "dashboard:addon-backup-capture", {"addon": "pg-main"}),
        ("viewer", "dashboard:addon-backup-verify", {"addon": "pg-main", "backup": "b001"}),
        ("member", "dashboard:addon-backup-restore", {"addon": "pg-main", "backup": "b001"}),
    ],
)
def test_a_forged_form_below_the_role_is_refused_and_changes_nothing(client_as, addon, role, name, kwargs):
    backup = _backup(addon, "b001", BackupState.CAPTURED, size=10)
    response = client_as(role).post(
        reverse(name, kwargs={"app": "demo", **kwargs}), {"kind": "postgres", "confirm": "pg-main"}
    )
    assert response.status_code == 403
    assert list(Addon.objects.values_list("name", flat=True)) == ["pg-main"]
    assert list(AddonBackup.objects.values_list("name", "state")) == [("b001", backup.state)]
    assert not AuditEvent.objects.filter(action__startswith="addon.").exists()


def test_another_team_gets_404_on_every_action(client_as, addon):
    client = client_as("outsider")
    assert client.get(reverse("dashboard:app", kwargs={"app": "demo"})).status_code == 404
    for name, kwargs in (
        ("dashboard:addon-create", {}),
        ("dashboard:addon-destroy", {"addon": "pg-main"}),
        ("dashboard:addon-backup-capture", {"addon": "pg-main"}),
    ):
        response = client.post(reverse(name, kwargs={"app": "demo", **kwargs}), {"confirm": "pg-main"})
        assert response.status_code == 404
    assert Addon.objects.filter(name="pg-main").exists()


def test_an_addon_not_attached_to_this_app_is_404(client_as, world, addon):
    Addon.objects.create(
        team=world.team, name="pg-other", kind="postgres", password_encrypted=encrypt_text("x")
    )
    response = client_as("admin").post(
        reverse("dashboard:addon-destroy", kwargs={"app": "demo", "addon": "pg-other"}),
        {"confirm": "pg-other"},
    )
    assert response.status_code == 404
    assert Addon.objects.filter(name="pg-other").exists()


def test_destroy_needs_the_addons_name_typed(client_as, addon):
    response = client_as("admin").post(
        reverse("dashboard:addon-destroy", kwargs={"app": "demo", "addon": "pg-main"}),
        {"confirm": "demo", "backup": "on"},
        follow=True,
    )
    assert response.redirect_chain[-1][0].endswith("/apps/demo/#addons")
    assert "type the add-on&#x27;s name (pg-main) to confirm" in response.content.decode()
    assert Addon.objects.filter(name="pg-main").exists()
    assert not AddonBackup.objects.exists()


def test_restore_needs_the_addons_name_typed(client_as, addon):
    _backup(addon, "b001", BackupState.VERIFIED, size=10)
    response = client_as("admin").post(
        reverse(
            "dashboard:addon-backup-restore", kwargs={"app": "demo", "addon": "pg-main", "backup": "b001"}
        ),
        {"confirm": ""},
        follow=True,
    )
    assert "to confirm restoring b001 over its data; nothing changed" in response.content.decode()
    assert not AuditEvent.objects.filter(action__startswith="addon.").exists()


def test_a_bad_kind_or_plan_is_one_message_and_makes_nothing(client_as, addon):
    client = client_as("member")
    url = reverse("dashboard:addon-create", kwargs={"app": "demo"})
    page = client.post(url, {"kind": "mysql", "plan": "small"}, follow=True).content.decode()
    assert "kind: unknown add-on &#x27;mysql&#x27;; one of: postgres, redis" in page
    page = client.post(url, {"kind": "redis", "plan": "huge"}, follow=True).content.decode()
    assert "plan: unknown plan &#x27;huge&#x27;" in page
    assert list(Addon.objects.values_list("name", flat=True)) == ["pg-main"]


def test_an_app_without_addons_says_so(client_as, world):
    panel = _page(client_as("viewer"))
    assert 'id="no-addons"' in panel


def test_a_backup_of_another_addon_is_404(client_as, world, addon):
    other = Addon.objects.create(
        team=world.team, name="pg-other", kind="postgres", password_encrypted=encrypt_text("x")
    )
    _backup(other, "b001", BackupState.VERIFIED, size=10)
    response = client_as("admin").post(
        reverse(
            "dashboard:addon-backup-restore", kwargs={"app": "demo", "addon": "pg-main", "backup": "b001"}
        ),
        {"confirm": "pg-main"},
    )
    assert response.status_code == 404


def test_restore_says_what_the_app_sees_per_kind(client_as, world, addon):
    cache = Addon.objects.create(
        team=world.team, name="cache", kind="redis", password_encrypted=encrypt_text("x")
    )
    AddonAttachment.objects.create(addon=cache, app=world.app, config_var="REDIS_URL")
    _backup(addon, "b001", BackupState.VERIFIED, size=10)
    _backup(cache, "b001", BackupState.VERIFIED, size=10)
    panel = _page(client_as("admin"))
    assert panel.count('data-action="restore-backup"') == 2
    for kind in ("postgres", "redis"):
        assert f'title="{escape(backups.restore_effect(kind))}"' in panel
