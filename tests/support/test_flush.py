"""After a transactional test the database is emptied by tests/support/flush.py: every row of every table goes, the
content types and permissions migrate made stay."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import TransactionTestCase

from tests.support import flush
from tests.support.factories import world_create

pytestmark = pytest.mark.django_db(transaction=True)


def _rows_by_table() -> dict[str, int]:
    return {
        model._meta.db_table: model._base_manager.count()
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


def test_every_row_goes_but_the_content_types_and_permissions():
    world_create()  # rows in many tables, referring to each other (teams, members, an app, its release...)
    before = _rows_by_table()
    assert sum(count for table, count in before.items() if table not in flush.KEPT_TABLES) > 10
    content_types, permissions = ContentType.objects.count(), Permission.objects.count()
    assert content_types and permissions

    flush.empty_database("default")

    after = _rows_by_table()
    assert {table: count for table, count in after.items() if count and table not in flush.KEPT_TABLES} == {}
    assert (ContentType.objects.count(), Permission.objects.count()) == (content_types, permissions)
    # what a later test makes afterwards refers to them as before
    world_create()


def test_it_is_what_every_transactional_test_ends_with():
    assert TransactionTestCase._fixture_teardown is flush._fixture_teardown
