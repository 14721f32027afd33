"""The upgrade's migration check: operations the previous version cannot live with while it still serves are
refused unless the migration says why they are fine; a database newer than the code (a downgrade) is refused."""

import sqlite3

from berth.operations.migration_safety import operation_findings
from django.db import migrations, models

from tests.conftest import manage


def _migration(*operations, name: str = "0002_change") -> migrations.Migration:
    migration = migrations.Migration(name, "shop")
    migration.operations = list(operations)
    return migration


def test_additions_are_safe_and_drops_renames_locks_and_one_way_code_are_not():
    safe = _migration(
        migrations.AddField("order", "note", models.TextField(default="")),
        migrations.CreateModel("Invoice", [("id", models.AutoField(primary_key=True))]),
        migrations.RunPython(lambda apps, schema: None, migrations.RunPython.noop),
    )
    assert operation_findings(safe) == []
    unsafe = _migration(
        migrations.RemoveField("order", "legacy"),
        migrations.RenameField("order", "total", "amount"),
        migrations.AddIndex("order", models.Index(fields=["note"], name="order_note_idx")),
        migrations.RunPython(lambda apps, schema: None),
        migrations.RunSQL("update shop_order set note = ''"),
    )
    found = operation_findings(unsafe)
    assert [f.why.split(":")[0] for f in found] == [
        "drops a column the old code still reads",
        "renames a column the old code still reads",
        "builds an index while writes to the table wait",
        "runs Python that has no reverse",
        "runs SQL that has no reverse",
    ]
    assert {f.migration for f in found} == {"shop.0002_change"} and found[0].accepted is None
    assert (
        operation_findings(unsafe, "the column is unused since v0.6")[0].accepted
        == "the column is unused since v0.6"
    )


def test_the_command_lists_what_is_pending_and_refuses_a_database_newer_than_the_code(tmp_path):
    env = {"BERTH_HOME": str(tmp_path), "DATABASE_URL": ""}
    manage("migrate", "-v0", env=env, check=True)
    done = manage("migrations_check", env=env)
    assert (done.returncode, done.stdout.strip()) == (0, "migrations: none to apply")

    manage(
        "migrate", "addons", "0001", "-v0", env=env, check=True
    )  # as if this code were newer than the database
    pending = manage("migrations_check", env=env)
    assert pending.stdout.startswith("migrations: ") and "addons.0002" in pending.stdout, pending.stdout
    manage("migrate", "-v0", env=env, check=True)

    with sqlite3.connect(tmp_path / "berth.sqlite3") as db:  # a migration only a newer Berth has
        db.execute(
            "insert into django_migrations (app, name, applied) values ('addons', '0999_from_the_future', '2027-01-01')"
        )
    ahead = manage("migrations_check", env=env)
    assert ahead.returncode != 0
    assert (
        "the database is newer than this code (a downgrade?): it has applied addons.0999_from_the_future"
        in (ahead.stderr)
    )
