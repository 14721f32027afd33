"""Add-on backups on the real engine: PostgreSQL and Redis servers as Swarm services, dumps streamed into the
backup store (a folder, or S3 served by a moto server on 127.0.0.1), restores that bring the data back or change
nothing, verification by restoring into a throwaway server, schedules, the final backup of a destroy."""

import datetime as dt
import hashlib
import secrets

import pytest
from berth.accounts.errors import Conflict
from berth.addons import backups, services
from berth.addons.models import Addon, AddonBackup, AddonBackupSchedule, BackupState
from berth.addons.selectors import addon_spec
from berth.addons.store import backup_store
from berth.core.redis import redis_client
from berth.observe.services import as_text, events_key
from berth.releases.models import Release
from berth.runtime.addons import addon_service_remove
from berth.runtime.swarm import team_network_remove

from tests.addons.conftest import TEST_TEAM_PREFIX, _remove_addons

pytestmark = pytest.mark.docker


@pytest.fixture
def backup_home(settings, tmp_path):
    """Each test's backups in a folder of its own."""
    settings.BERTH_BACKUP_URL = str(tmp_path / "backups")
    return tmp_path / "backups"


@pytest.fixture
def team_app(addon_images, backup_home, db, make_user, make_team, make_app):
    owner = make_user()
    team = make_team(f"{TEST_TEAM_PREFIX}{secrets.token_hex(3)}", owner=owner)
    app = make_app(f"adtapp{secrets.token_hex(3)}", team=team, actor=owner)
    Release.objects.create(app=app, version=1, image="demo:v1", procfile={"web": "true"})
    yield type("TeamApp", (), {"owner": owner, "team": team, "app": app})
    for addon in Addon.objects.filter(team=team):
        try:
            services.addon_destroy(addon=addon, actor=None)
        except Exception:
            pass
    _remove_addons(f"{team.name}-")  # what a failed destroy left (a copy made from a backup too)
    team_network_remove(team=team.name)


def _psql(addon, app, sql: str) -> str:
    result = services.addon_run(addon=addon, app=app, args=["-v", "ON_ERROR_STOP=1", "-tAc", sql], actor=None)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _redis(addon, app, *words: str) -> str:
    result = services.addon_run(addon=addon, app=app, args=list(words), actor=None)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _events(app) -> list[tuple[str, str]]:
    entries = redis_client().xrange(events_key(app.name))
    return [(as_text(fields[b"kind"]), as_text(fields[b"message"])) for _, fields in entries]


def _flip_bytes(backup: AddonBackup, at: int = 200) -> None:
    """Damage the stored object in place: a few bytes inverted, the size kept."""
    path = backup_store()._path(backup.store_key)
    data = bytearray(path.read_bytes())
    for i in range(at, min(at + 8, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _seed(addon, app, rows: int) -> None:
    _psql(
        addon,
        app,
        "create table items (id int primary key, body text); "
        f"insert into items select g, md5(g::text) from generate_series(1, {rows}) g; "
        "create schema audit; create table audit.log (at timestamptz default now()); "
        "insert into audit.log default values; insert into audit.log default values",
    )


def test_postgres_capture_then_restore_brings_the_data_back(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 5000)

    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    assert backup.state == BackupState.CAPTURED, backup.error
    assert backup.name == "b001" and backup.size > 10_000 and len(backup.sha256) == 64
    assert backup.counts == {"audit.log": 2, "public.items": 5000}
    with backups.backup_open(backup) as stream:
        assert stream.read(5) == b"PGDMP"  # pg_dump's custom format
    with backups.backup_open(backup) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == backup.sha256

    _psql(addon, team_app.app, "delete from items where id > 10; update items set body = 'changed'")
    assert _psql(addon, team_app.app, "select count(*) from items") == "10"

    seconds = backups.backup_restore(backup=backup, addon=addon, actor=team_app.owner)
    assert seconds > 0
    assert _psql(addon, team_app.app, "select count(*) from items") == "5000"
    assert _psql(addon, team_app.app, "select count(*) from items where body = 'changed'") == "0"
    assert _psql(addon, team_app.app, "select count(*) from audit.log") == "2"
    assert ("addon.backup.restored", f"db restored from backup {backup.name}") in _events(team_app.app)


def test_a_damaged_backup_is_refused_by_restore_and_fails_its_verification(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 300)
    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    assert backup.state == BackupState.CAPTURED, backup.error

    good = backups.backup_verify(backup)
    assert good.state == BackupState.VERIFIED, good.error
    assert good.verify_counts == {"audit.log": 2, "public.items": 300}
    assert backups.backup_alarm(addon) is None

    _psql(addon, team_app.app, "insert into items values (100000, 'written after the backup')")
    _flip_bytes(backup)
    with pytest.raises(Conflict, match="does not match its checksum"):
        backups.backup_restore(backup=backup, addon=addon, actor=team_app.owner)
    # untouched: the row written after the backup is still there, and nothing else moved
    assert _psql(addon, team_app.app, "select count(*) from items") == "301"

    bad = backups.backup_verify(backup)
    assert bad.state == BackupState.VERIFY_FAILED
    assert "does not match its checksum" in bad.error
    alarm = backups.backup_alarm(addon)
    assert alarm and "b001's verification failed" in alarm
    kinds = [kind for kind, _ in _events(team_app.app)]
    assert "addon.backup.verify_failed" in kinds
    # a backup that failed its verification is not restored either
    with pytest.raises(Conflict, match="failed its verification"):
        backups.backup_restore(backup=bad, addon=addon, actor=team_app.owner)


def test_a_backup_whose_counts_differ_from_the_restore_fails_its_verification(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 50)
    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    # as if the dump had lost rows: the capture said 51, the restore will hold 50
    AddonBackup.objects.filter(pk=backup.pk).update(counts={"audit.log": 2, "public.items": 51})
    checked = backups.backup_verify(backup)
    assert checked.state == BackupState.VERIFY_FAILED
    assert "public.items: 50 rows, 51 at capture" in checked.error


def test_redis_capture_is_an_rdb_verified_by_its_keys_per_db_and_restored(team_app):
    addon = services.addon_create(app=team_app.app, kind="redis", name="cache", actor=team_app.owner)
    # one client run for the 25 keys: each run is a container on the team's network (~1.5 s here, 24 of them)
    _redis(addon, team_app.app, "mset", *(word for i in range(25) for word in (f"k{i}", f"v{i}")))
    _redis(addon, team_app.app, "-n", "3", "set", "other", "db")

    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    assert backup.state == BackupState.CAPTURED, backup.error
    assert backup.counts == {"db0": [25, 25], "db3": [1, 1]}
    with backups.backup_open(backup) as stream:
        assert stream.read(5) == b"REDIS"
    verified = backups.backup_verify(backup)
    assert verified.state == BackupState.VERIFIED, verified.error
    assert verified.verify_counts == {"db0": 25, "db3": 1}

    _redis(addon, team_app.app, "flushall")
    _redis(addon, team_app.app, "set", "after", "the backup")
    backups.backup_restore(backup=backup, addon=addon, actor=team_app.owner)
    assert _redis(addon, team_app.app, "dbsize") == "25"
    assert _redis(addon, team_app.app, "get", "k7") == "v7"
    assert _redis(addon, team_app.app, "-n", "3", "get", "other") == "db"
    assert _redis(addon, team_app.app, "exists", "after") == "0"
    # the restored data is the server's AOF now: it survives a restart
    services.addon_credentials_rotate(addon=addon, actor=None)
    addon.refresh_from_db()
    assert _redis(addon, team_app.app, "dbsize") == "25"

    _flip_bytes(backup)
    with pytest.raises(Conflict, match="does not match its checksum"):
        backups.backup_restore(backup=backup, addon=addon, actor=team_app.owner)
    assert _redis(addon, team_app.app, "dbsize") == "25"


def test_a_capture_that_fails_is_a_failed_backup_an_event_and_the_alarm(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    # the server's service gone (its row stays): nothing answers the dump
    addon_service_remove(addon_spec(addon))
    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    assert backup.state == BackupState.FAILED and backup.error
    assert not backup.store_key
    assert "b001's capture failed" in backups.backup_alarm(addon)
    assert "addon.backup.failed" in [kind for kind, _ in _events(team_app.app)]


def test_a_backup_goes_to_s3_and_is_verified_from_there(team_app, s3_env, settings):
    endpoint, bucket = s3_env
    settings.BERTH_BACKUP_URL = f"s3://{bucket}/berth"
    settings.BERTH_BACKUP_S3_ENDPOINT = endpoint
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 1000)
    backup = backups.backup_capture(addon=addon, actor=team_app.owner)
    assert backup.state == BackupState.CAPTURED, backup.error
    assert backup_store().exists(backup.store_key)
    assert backup.store_key.startswith(f"{team_app.team.name}/db/b001-")
    verified = backups.backup_verify(backup)
    assert verified.state == BackupState.VERIFIED, verified.error


def test_a_schedule_captures_verifies_once_a_day_and_keeps_the_newest(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 10)
    backups.backup_schedule_set(addon=addon, at="03:30 UTC", keep=1, actor=team_app.owner)
    day = dt.datetime(2030, 1, 1, 3, 0, tzinfo=dt.UTC)
    assert backups.backup_schedules_due(day) == []
    assert backups.backup_run_scheduled(addon_id=addon.pk, now=day) is None  # not yet 03:30

    at = day.replace(minute=31)
    assert backups.backup_schedules_due(at) == [addon.pk]
    first = backups.backup_run_scheduled(addon_id=addon.pk, now=at)
    assert first.state == BackupState.VERIFIED and first.trigger == "scheduled", first.error
    assert backups.backup_run_scheduled(addon_id=addon.pk, now=at) is None  # the day is claimed: once
    assert backups.backup_schedules_due(at) == []

    manual = backups.backup_capture(addon=addon, actor=team_app.owner)
    next_day = at + dt.timedelta(days=1)
    second = backups.backup_run_scheduled(addon_id=addon.pk, now=next_day)
    assert second.state == BackupState.VERIFIED, second.error
    # keep 1: the first scheduled one is pruned (its object too); manual backups stay
    names = set(backups.backups_of(addon).values_list("name", flat=True))
    assert names == {manual.name, second.name}
    assert not backup_store().exists(first.store_key)
    assert AddonBackupSchedule.objects.get(addon=addon).last_run_on == next_day.date()


def test_destroy_keeps_a_final_backup_that_a_new_add_on_is_made_from(team_app):
    addon = services.addon_create(app=team_app.app, kind="postgres", name="db", actor=team_app.owner)
    _seed(addon, team_app.app, 123)
    final = backups.addon_destroy_with_backup(addon=addon, actor=team_app.owner)
    assert final.trigger == "final" and final.state == BackupState.CAPTURED
    assert final.addon is None and final.addon_name == "db"  # it outlived its add-on
    assert not Addon.objects.filter(team=team_app.team, name="db").exists()

    found = backups.backup_of_team(team=team_app.team, ref="db/b001")
    copy = backups.addon_create_from_backup(app=team_app.app, backup=found, name="copy", actor=team_app.owner)
    assert _psql(copy, team_app.app, "select count(*) from items") == "123"
