"""The scheduled control-plane backup: written into BERTH_HOME/control-backups, verified by restoring its database
into a throwaway one and counting its rows, pruned to the newest N verified; a damaged one raises the alarm
`manage.py doctor` shows (controlplane.services.backup_alarm) and an audit event."""

import datetime as dt
import hashlib
import io
import json
import tarfile

import boto3
import pytest
from berth.audit.models import AuditEvent
from berth.controlplane import services
from berth.controlplane.tasks import backup_tick_task
from django.db import connection
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def home(tmp_path, settings, make_app):
    path = tmp_path / "home"
    path.mkdir()
    settings.BERTH_HOME = path
    settings.BERTH_BACKUP_URL = ""
    settings.BERTH_CONTROL_BACKUP_SCHEDULE = "daily"
    settings.BERTH_CONTROL_BACKUP_KEEP = 2
    for n in range(2):
        make_app(f"cps-app-{n}")
    return path


def _throwaway_databases() -> list[str]:
    """PostgreSQL's throwaway verification databases (SQLite's are files in a temporary folder)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'berth_verify_%'")
        return [row[0] for row in cursor.fetchall()]


def test_a_scheduled_backup_is_stored_and_verified_by_a_restore_of_its_database(home):
    before = set(_throwaway_databases())

    entry = services.backup_scheduled_run()

    assert entry["state"] == "verified", entry.get("error")
    assert entry["counts"]["apps"] == 2
    stored = home / "control-backups" / entry["name"]
    assert stored.is_file() and stored.stat().st_size == entry["size"]
    assert services.backups_index()[0]["name"] == entry["name"]
    assert services.backup_alarm() is None
    assert set(_throwaway_databases()) == before  # the throwaway database is dropped after


def test_a_damaged_stored_backup_fails_its_verification_raises_the_alarm_and_an_event(home):
    entry = services.backup_scheduled_run()
    stored = home / "control-backups" / entry["name"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    entry = services.backup_verify_record(entry["name"])

    assert entry["state"] == "verify_failed"
    alarm = services.backup_alarm()
    assert alarm.startswith(f"control-plane backup {entry['name']}'s verification by restore failed: ")
    assert "damaged" in alarm
    assert AuditEvent.objects.filter(
        action="controlplane.backup_verify_failed", target=entry["name"]
    ).exists()


def test_a_dump_whose_rows_differ_from_the_counts_taken_at_backup_time_fails_verification(home):
    entry = services.backup_scheduled_run()
    # the same archive, its manifest claiming one more app than the dump holds: what a silently short dump is
    stored = home / "control-backups" / entry["name"]
    rewritten = home / "rewritten.tar.gz"
    _rewrite_manifest(stored, rewritten, lambda m: m["database"]["rows"].update(apps_app=3))
    stored.write_bytes(rewritten.read_bytes())
    index = services.backups_index()
    index[0]["sha256"] = hashlib.sha256(rewritten.read_bytes()).hexdigest()
    (home / "control-backups" / "index.json").write_text(json.dumps(index))

    entry = services.backup_verify_record(entry["name"])

    assert entry["state"] == "verify_failed"
    assert "apps_app: 2 rows, 3 at backup time" in entry["error"]


def _rewrite_manifest(source, target, change) -> None:
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for info in old.getmembers():
            data = old.extractfile(info).read() if info.isfile() else None
            if info.name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)


def test_only_the_newest_verified_backups_are_kept(home):
    names = [services.backup_scheduled_run()["name"] for _ in range(3)]

    kept = [entry["name"] for entry in services.backups_index()]

    assert kept == [names[2], names[1]]
    assert not (home / "control-backups" / names[0]).exists()
    assert (home / "control-backups" / names[2]).exists()


def test_a_backup_is_due_when_none_is_younger_than_the_schedule(home, settings):
    assert services.backup_due()
    assert backup_tick_task() is not None  # the beat's tick makes the first one
    assert not services.backup_due()
    assert backup_tick_task() is None
    assert services.backup_due(timezone.now() + dt.timedelta(hours=25))
    settings.BERTH_CONTROL_BACKUP_SCHEDULE = "off"
    assert not services.backup_due(timezone.now() + dt.timedelta(days=30))


def test_the_alarm_says_when_backups_stopped(home):
    services.backup_scheduled_run()
    index = services.backups_index()
    index[0]["created_at"] = (timezone.now() - dt.timedelta(days=3)).isoformat()
    (home / "control-backups" / "index.json").write_text(json.dumps(index))

    assert (
        services.backup_alarm() == "no control-plane backup for 72 h (schedule: every 24 h); is beat running?"
    )


def test_with_an_s3_backup_url_scheduled_backups_go_there_and_are_verified_from_there(home, settings, s3_env):
    endpoint, bucket = s3_env
    settings.BERTH_BACKUP_URL = f"s3://{bucket}/berth"
    settings.BERTH_BACKUP_S3_ENDPOINT = endpoint
    client = boto3.client("s3", endpoint_url=endpoint)

    names = [services.backup_scheduled_run()["name"] for _ in range(3)]

    entries = services.backups_index()
    assert [e["state"] for e in entries] == ["verified", "verified"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"berth/control-plane/{names[2]}" in keys and f"berth/control-plane/{names[1]}" in keys
    assert f"berth/control-plane/{names[0]}" not in keys  # pruned there
    assert not (home / "control-backups" / names[2]).exists()  # only the index stays local
