"""Whether this checkout's database migrations may run while the previous version of Berth still serves (an upgrade
migrates first, then restarts the processes one by one: for a while the old code reads the new schema).

An operation is unsafe when the old code breaks on its result (a column or table it still reads is dropped or
renamed, a column's type changes under it) or when it holds a lock on a whole table while it works (building an
index or a constraint without CONCURRENTLY blocks writes; a type change rewrites the table), or when it cannot be
undone (RunPython/RunSQL without a reverse: no way back). A migration that knows what it does says so in its module:
`berth_unsafe_ok = "why it is fine"`, and is then reported, not refused.
"""

import importlib
from dataclasses import dataclass

from django.db import connection, migrations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration

BREAKS_OLD_CODE = {
    migrations.RemoveField: "drops a column the old code still reads",
    migrations.DeleteModel: "drops a table the old code still reads",
    migrations.RenameField: "renames a column the old code still reads",
    migrations.RenameModel: "renames a table the old code still reads",
    migrations.AlterField: "changes a column under the old code (a type change also rewrites the table)",
}
LOCKS_TABLE = {
    migrations.AddIndex: "builds an index while writes to the table wait",
    migrations.AddConstraint: "checks a constraint over the whole table while writes wait",
    migrations.AlterUniqueTogether: "builds a unique index while writes to the table wait",
}


@dataclass(frozen=True)
class Finding:
    migration: str  # app_label.name
    operation: str
    why: str
    accepted: str | None  # the migration's berth_unsafe_ok reason, when it gives one


def operation_findings(migration: Migration, accepted: str | None = None) -> list[Finding]:
    """What in `migration` is unsafe while the old code serves."""
    name = f"{migration.app_label}.{migration.name}"
    found = []
    for operation in migration.operations:
        why = next((text for kind, text in BREAKS_OLD_CODE.items() if type(operation) is kind), None)
        why = why or next((text for kind, text in LOCKS_TABLE.items() if type(operation) is kind), None)
        if isinstance(operation, migrations.RunPython) and not operation.reversible:
            why = "runs Python that has no reverse: the migration cannot be undone"
        if isinstance(operation, migrations.RunSQL) and not operation.reversible:
            why = "runs SQL that has no reverse: the migration cannot be undone"
        if why:
            found.append(Finding(name, operation.describe(), why, accepted))
    return found


def pending_migrations() -> list[Migration]:
    """The migrations this code has that the database has not applied, in the order `migrate` applies them."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [migration for migration, backwards in plan if not backwards]


def unknown_applied() -> list[str]:
    """Migrations the database has applied that this code does not know: the database is newer (a downgrade)."""
    executor = MigrationExecutor(connection)
    known = set(executor.loader.disk_migrations)
    ours = {app for app, _ in known}
    applied = executor.recorder.applied_migrations()
    return sorted(f"{app}.{name}" for app, name in applied if app in ours and (app, name) not in known)


def pending_findings() -> list[Finding]:
    findings = []
    for migration in pending_migrations():
        module = importlib.import_module(type(migration).__module__)
        findings += operation_findings(migration, getattr(module, "berth_unsafe_ok", None))
    return findings
