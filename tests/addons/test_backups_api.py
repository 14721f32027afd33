"""The backups API without the engine: listing, download with its checksum, another team's backups unseen, a
destroyed add-on's backups still reachable, schedules and their bad input, retention, the alarm."""

import datetime as dt
import hashlib

import pytest
from berth.addons import backups
from berth.addons.models import Addon, AddonBackup, AddonBackupSchedule, BackupState
from berth.addons.store import backup_store
from berth.apps.crypto import encrypt_text
from berth.audit.models import AuditEvent
from django.urls import reverse
from django.utils import timezone

PAYLOAD = b"PGDMP" + bytes(range(256)) * 4000  # ~1 MB, more than one chunk of the store


@pytest.fixture
def store(settings, tmp_path):
    settings.BERTH_BACKUP_URL = str(tmp_path / "backups")
    return backup_store()


@pytest.fixture
def addon(world):
    return Addon.objects.create(
        team=world.team, name="pg-main", kind="postgres", password_encrypted=encrypt_text("pw")
    )


def _backup(
    addon, store, name="b001", *, state=BackupState.CAPTURED, trigger="manual", data=PAYLOAD, when=None
):
    key = f"{addon.team.name}/{addon.name}/{name}.dump"
    stored = store.put(key, [data])
    backup = AddonBackup.objects.create(
        team=addon.team,
        addon=addon,
        addon_name=addon.name,
        kind=addon.kind,
        name=name,
        state=state,
        trigger=trigger,
        store_key=key,
        size=stored.size,
        sha256=stored.sha256,
        counts={"public.items": 3},
        finished_at=timezone.now(),
    )
    if when is not None:
        AddonBackup.objects.filter(pk=backup.pk).update(started_at=when)
        backup.refresh_from_db()
    return backup


def _url(name, **kwargs):
    return reverse(name, kwargs={"app": "demo", "addon": "pg-main", **kwargs})


def test_backups_are_listed_and_downloaded_whole_with_their_checksum(world, addon, store):
    backup = _backup(addon, store)
    client = world.client("member")
    listed = client.get(_url("api:app-addon-backups")).json()
    assert [(b["name"], b["state"], b["size"]) for b in listed] == [("b001", "captured", len(PAYLOAD))]
    response = client.get(_url("api:app-addon-backup-download", backup="b001"))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == PAYLOAD
    assert response["X-Berth-Sha256"] == backup.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert response["Content-Length"] == str(len(PAYLOAD))
    assert 'filename="pg-main-b001.dump"' in response["Content-Disposition"]


def test_another_team_sees_no_backup_of_the_team(world, addon, store, make_app):
    from berth.accounts.models import Team

    _backup(addon, store)
    make_app("theirs", team=Team.objects.get(name="other"), actor=world.users["outsider"])
    client = world.client("outsider")
    for name, extra in (
        ("api:app-addon-backups", {}),
        ("api:app-addon-backup", {"backup": "b001"}),
        ("api:app-addon-backup-download", {"backup": "b001"}),
    ):
        response = client.get(reverse(name, kwargs={"app": "theirs", "addon": "pg-main", **extra}))
        assert response.status_code == 404, (name, response.content)
        assert "detail" in response.json()


def test_a_destroyed_add_ons_backups_stay_reachable_by_its_name(world, addon, store):
    _backup(addon, store, trigger="final")
    addon.delete()
    backup = AddonBackup.objects.get(name="b001")
    assert backup.addon is None and backup.addon_name == "pg-main"
    client = world.client("viewer")
    listed = client.get(_url("api:app-addon-backups"))
    assert listed.status_code == 200 and [b["trigger"] for b in listed.json()] == ["final"]
    capture = world.client("member").post(_url("api:app-addon-backups"), {}, format="json")
    assert capture.status_code == 404 and "only its backups are left" in capture.json()["detail"]
    unknown = client.get(reverse("api:app-addon-backups", kwargs={"app": "demo", "addon": "nothing"}))
    assert unknown.status_code == 404


def test_an_unknown_or_malformed_backup_id_is_a_404_with_a_detail(world, addon, store):
    client = world.client("viewer")
    for ref in ("b404", "latest"):
        response = client.get(_url("api:app-addon-backup", backup=ref))
        assert response.status_code == 404 and response.json()["detail"], ref


def test_a_damaged_download_is_caught_by_the_checksum_the_client_checks(world, addon, store):
    backup = _backup(addon, store)
    path = store._path(backup.store_key)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    response = world.client("member").get(_url("api:app-addon-backup-download", backup="b001"))
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() != response["X-Berth-Sha256"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"at": "25:00"}, "at"),
        ({"at": "noon"}, "at"),
        ({}, "at"),
        ({"at": "02:00", "keep": 0}, "keep"),
        ({"at": "02:00", "keep": "7"}, "keep"),
    ],
)
def test_a_bad_schedule_is_a_400_naming_the_field(world, addon, body, field):
    response = world.client("member").put(_url("api:app-addon-backup-schedule"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"] and response.json()["detail"].startswith(f"{field}: ")
    assert not AddonBackupSchedule.objects.exists()


def test_a_schedule_is_set_shown_with_the_add_on_and_audited(world, addon):
    client = world.client("member")
    response = client.put(_url("api:app-addon-backup-schedule"), {"at": "2:05 utc", "keep": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"at": "02:05 UTC", "keep": 3, "last_run_on": None}
    assert client.get(_url("api:app-addon-backup-schedule")).json()["at"] == "02:05 UTC"
    assert client.delete(_url("api:app-addon-backup-schedule")).status_code == 204
    again = client.delete(_url("api:app-addon-backup-schedule"))
    assert again.status_code == 400 and "no backup schedule" in again.json()["detail"]
    actions = AuditEvent.objects.filter(target="pg-main").values_list("action", flat=True)
    assert sorted(actions) == ["addon.backup.schedule", "addon.backup.unschedule"]


def test_due_schedules_are_those_past_their_time_and_not_run_today(world, addon):
    AddonBackupSchedule.objects.create(addon=addon, at=dt.time(2, 0))
    at = dt.datetime(2030, 5, 1, 2, 0, tzinfo=dt.UTC)
    assert backups.backup_schedules_due(at - dt.timedelta(minutes=1)) == []
    assert backups.backup_schedules_due(at) == [addon.pk]
    AddonBackupSchedule.objects.update(last_run_on=at.date())
    assert backups.backup_schedules_due(at) == []
    assert backups.backup_schedules_due(at + dt.timedelta(days=1)) == [addon.pk]


def test_pruning_keeps_the_newest_good_scheduled_backups_and_every_manual_one(world, addon, store):
    start = timezone.now() - dt.timedelta(days=10)
    made = {}
    for i, (state, trigger) in enumerate(
        [
            (BackupState.VERIFIED, "scheduled"),  # b001: oldest, goes
            (BackupState.CAPTURED, "manual"),  # b002: manual, stays
            (BackupState.VERIFY_FAILED, "scheduled"),  # b003: older than the oldest kept, goes
            (BackupState.VERIFIED, "scheduled"),  # b004: kept
            (BackupState.FAILED, "scheduled"),  # b005: newer than the oldest kept, stays (it is the alarm)
            (BackupState.VERIFIED, "scheduled"),  # b006: kept
        ],
        start=1,
    ):
        made[i] = _backup(
            addon, store, f"b{i:03d}", state=state, trigger=trigger, when=start + dt.timedelta(days=i)
        )
    deleted = backups.backup_prune(addon=addon, keep=2)
    assert sorted(deleted) == ["b001", "b003"]
    assert sorted(backups.backups_of(addon).values_list("name", flat=True)) == [
        "b002",
        "b004",
        "b005",
        "b006",
    ]
    assert not store.exists(made[1].store_key) and store.exists(made[4].store_key)


def test_the_alarm_is_the_newest_finished_backups_failure(world, addon, store):
    start = timezone.now() - dt.timedelta(hours=3)
    _backup(addon, store, "b001", state=BackupState.VERIFIED, when=start)
    assert backups.backup_alarm(addon) is None
    bad = _backup(addon, store, "b002", state=BackupState.VERIFY_FAILED, when=start + dt.timedelta(hours=1))
    AddonBackup.objects.filter(pk=bad.pk).update(error="public.items: 2 rows, 3 at capture")
    assert (
        backups.backup_alarm(addon) == "backup b002's verification failed: public.items: 2 rows, 3 at capture"
    )
    _backup(addon, store, "b003", state=BackupState.VERIFIED, when=start + dt.timedelta(hours=2))
    assert backups.backup_alarm(addon) is None


def test_a_backup_id_names_one_backup_of_the_team(world, addon, store):
    other = Addon.objects.create(
        team=world.team, name="pg-two", kind="postgres", password_encrypted=encrypt_text("p")
    )
    _backup(addon, store)
    _backup(other, store)
    with pytest.raises(Exception, match="names several backups"):
        backups.backup_of_team(team=world.team, ref="b001")
    assert backups.backup_of_team(team=world.team, ref="pg-two/b001").addon_name == "pg-two"
    assert backups.backup_of_team(team=world.team, ref="b001", addon_name="pg-main").addon_name == "pg-main"


@pytest.mark.docker  # the sweep also removes old backup containers: it lists them on the engine
def test_a_capture_left_by_a_killed_worker_is_failed_by_the_sweep_and_raises_the_alarm(world, addon):
    stuck = AddonBackup.objects.create(
        team=addon.team, addon=addon, addon_name=addon.name, kind=addon.kind, name="b001"
    )
    AddonBackup.objects.filter(pk=stuck.pk).update(started_at=timezone.now() - dt.timedelta(hours=8))
    fresh = AddonBackup.objects.create(
        team=addon.team, addon=addon, addon_name=addon.name, kind=addon.kind, name="b002"
    )
    assert backups.backups_sweep() == 1
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert stuck.state == BackupState.FAILED and "worker" in stuck.error
    assert fresh.state == BackupState.CAPTURING  # still streaming, perhaps
    assert "b001's capture failed: the capture stopped" in backups.backup_alarm(addon)
