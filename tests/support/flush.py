"""How a transactional test's database is emptied after it (pytest-django's `transactional_db`, `live_server`, the
end-to-end platform): its rows deleted, the content types and permissions that migrate made kept.

Django's TransactionTestCase truncates every table, those two included, then sends post_migrate so that contenttypes
and auth make them again: ~60 queries after every such test. py-spy of the tier without Docker in `make test`: 10
to 23 % of a worker's samples were in that signal's receivers. Measured on PostgreSQL (33 tables): the flush and the
signal 357-498 ms, TRUNCATE alone 38-132 ms, DELETE of each table in one transaction 5-16 ms. Both kept tables hold
what migrate derives from the models, which no test changes; every other row goes, as before. Test equipment."""

from django.core.management.color import no_style
from django.db import connections, transaction
from django.test import TransactionTestCase

KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})


def empty_database(alias: str) -> None:
    """Delete every row of the project's tables but the kept ones, in one transaction."""
    connection = connections[alias]
    tables = [
        table
        for table in connection.introspection.django_table_names(only_existing=True, include_views=False)
        if table not in KEPT_TABLES
    ]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED there: checked at commit, when every row
            # referring to a deleted one is gone too, so the order of the tables does not matter
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            for table in tables:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
        else:  # SQLite's flush is already DELETEs, in the order its foreign keys need
            for sql in connection.ops.sql_flush(
                no_style(), tables, reset_sequences=False, allow_cascade=False
            ):
                cursor.execute(sql)


def _fixture_teardown(self: TransactionTestCase) -> None:
    for alias in self._databases_names(include_mirrors=False):
        empty_database(alias)


def install() -> None:
    """Empty the database this way after every transactional test of this process (pytest_configure calls it)."""
    TransactionTestCase._fixture_teardown = _fixture_teardown
