"""The backup commands through the installed `berth` script against a live server and the real engine: capture,
list, verify, download (checksum checked), restore with --confirm, schedule, destroy's final backup and a copy
made from it."""

import hashlib
import json
import secrets

import pytest

from tests.addons.conftest import _remove_addons
from tests.cli.conftest import assert_one_error_line, ok

pytestmark = pytest.mark.docker


@pytest.fixture
def pg_name(addon_images, shop, settings, tmp_path):
    settings.BERTH_BACKUP_URL = str(tmp_path / "backups")
    name = f"bk-{secrets.token_hex(3)}"
    yield name
    _remove_addons(f"acme-{name}")  # and its copy, <name>-c


def _count(cli, shop, addon) -> str:
    return ok(cli("pg:psql", addon, "-a", shop, "-c", "select count(*) from items")).split()[2]


def test_capture_verify_download_restore_and_a_copy_from_the_final_backup(cli, shop, pg_name, tmp_path):
    ok(cli("addons:create", "postgres", "--name", pg_name, "-a", shop))
    sql = "create table items (id int); insert into items select generate_series(1, 100)"
    ok(cli("pg:psql", pg_name, "-a", shop, "-c", sql))

    captured = ok(cli("pg:backups:capture", "-a", shop))  # the app's only postgres add-on
    assert captured.startswith(f"Captured {pg_name}/b001: ")
    listed = ok(cli("pg:backups", "-a", shop))
    assert "b001" in listed and "captured, not verified yet" in listed
    assert ok(cli("pg:backups:verify", "b001", "-a", shop)).startswith(f"Verified {pg_name}/b001")

    target = tmp_path / "db.dump"
    downloaded = json.loads(ok(cli("pg:backups:download", "b001", "-a", shop, "-o", str(target), "--json")))
    data = target.read_bytes()
    assert data.startswith(b"PGDMP") and hashlib.sha256(data).hexdigest() == downloaded["sha256"]

    ok(cli("pg:psql", pg_name, "-a", shop, "-c", "delete from items where id > 1"))
    assert _count(cli, shop, pg_name) == "1"
    assert_one_error_line(cli("pg:backups:restore", "b001", "-a", shop), contains=f"--confirm {shop}")
    run = cli("pg:backups:restore", "b001", "-a", shop, "--confirm", shop)
    assert run.returncode == 0, run.stderr
    # said before it starts, on stderr: what the app sees while it runs
    assert run.stderr.startswith(f"Restoring {pg_name}/b001 into {pg_name}: the app's queries")
    assert f"Restored {pg_name}/b001 into {pg_name}" in run.stdout and "Meanwhile:" in run.stdout
    assert _count(cli, shop, pg_name) == "100"

    assert "no schedule" in ok(cli("addons:info", pg_name, "-a", shop))
    ok(cli("pg:backups:schedule", "--at", "02:00 UTC", "--keep", "3", "-a", shop))
    assert "daily at 02:00 UTC, newest 3 kept" in ok(cli("addons:info", pg_name, "-a", shop))
    assert_one_error_line(cli("pg:backups:schedule", "--at", "25:00", "-a", shop), contains="HH:MM")
    assert_one_error_line(cli("pg:backups:info", "b404", "-a", shop), contains="no backup b404")

    destroyed = ok(cli("addons:destroy", pg_name, "-a", shop, "--confirm", pg_name))
    assert f"final backup {pg_name}/b002 stays" in destroyed
    copy = f"{pg_name}-c"
    made = ok(
        cli("addons:create", "postgres", "--name", copy, "--from-backup", f"{pg_name}/b002", "-a", shop)
    )
    assert f"with the data of backup {pg_name}/b002" in made
    assert _count(cli, shop, copy) == "100"
    ok(cli("addons:destroy", copy, "-a", shop, "--confirm", copy, "--no-backup"))
