"""A list query compiled once per shape (berth.core.queries) runs with each caller's values, never the first's.

The API's apps list is such a query: the user's id and the name a page starts after are parameters of SQL compiled
once; a tenant must still see only its own teams' apps, whoever asked first."""

import secrets
import time
from datetime import timedelta

import pytest
from berth.apps.models import App
from berth.certs.models import Certificate
from berth.certs.selectors import app_summaries_page
from berth.core.queries import compiled_rows
from berth.dashboard.selectors import STATUS_FIELDS, AppStatusRows
from berth.releases.selectors import app_summaries_visible
from django.core.paginator import Paginator
from django.db.models import Count, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams(make_user, make_team, make_app):
    alice, bob = make_user(), make_user()
    for user, names in ((alice, ("a-one", "a-two", "a-three")), (bob, ("b-one",))):
        team = make_team(owner=user)
        for name in names:
            make_app(name=name, team=team, actor=user)
    return alice, bob


def test_one_compiled_shape_answers_each_user_with_their_own_apps_and_pages(two_teams):
    alice, bob = two_teams
    shape = ("test", secrets.token_hex(4))  # a shape of this test's own: compiled here
    built = []

    def build(user_id: int, after: str):
        built.append((user_id, after))
        return app_summaries_visible(user_id=user_id, after=after)

    def names(user, after):
        return [row["name"] for row in compiled_rows(shape, build, user_id=user.pk, after=after)]

    assert names(alice, "a-one") == ["a-three", "a-two"]
    assert names(bob, "a-one") == ["b-one"]
    assert names(alice, "a-three") == ["a-two"]
    assert names(bob, "b-one") == []
    assert len(built) == 1 and built[0] != (alice.pk, "a-one")  # compiled once, on stand-ins
    rows = compiled_rows(shape, build, user_id=alice.pk, after="a-three")
    assert set(rows[0]) == {"id", "name", "created_at", "current_version", "team_name", "parent_name"}
    assert rows[0]["created_at"].tzinfo is not None  # converted as values() converts (SQLite stores text)


def test_the_apps_list_of_one_user_is_never_another_users(two_teams, make_user):
    alice, bob = two_teams
    stranger = make_user()
    for limit in (None, 2, 2):
        assert [r["name"] for r in app_summaries_page(user=alice, limit=limit)] == (
            ["a-one", "a-three", "a-two"][:limit]
        )
        assert [r["name"] for r in app_summaries_page(user=bob, limit=limit)] == ["b-one"]
        assert app_summaries_page(user=stranger, limit=limit) == []
    assert [r["name"] for r in app_summaries_page(user=alice, after="a-one", limit=1)] == ["a-three"]
    assert [r["name"] for r in app_summaries_page(user=bob, after="a-one", limit=1)] == ["b-one"]
    admin = make_user(is_superuser=True)
    assert [r["name"] for r in app_summaries_page(user=admin, after="a-two")] == ["b-one"]
    assert [r["name"] for r in app_summaries_page(user=alice, search="TWO")] == ["a-two"]


def test_certified_follows_the_clock_in_a_compiled_list(two_teams):
    alice, _ = two_teams

    def certified():
        return {row["name"]: row["certified"] for row in app_summaries_page(user=alice, limit=10)}

    assert not any(certified().values())  # compiled now: a time put in the SQL would be this one
    Certificate.objects.create(
        app_id=app_summaries_page(user=alice, limit=1)[0]["id"],
        hostnames=["a-one.localhost"],
        source="uploaded",
        serial="01",
        not_after=timezone.now() + timedelta(seconds=0.5),
    )
    assert certified()["a-one"] is True
    time.sleep(0.7)
    assert certified()["a-one"] is False  # expired since the SQL was compiled


def test_a_shape_compiled_for_a_superuser_is_never_run_for_a_member(two_teams, make_user):
    alice, _ = two_teams
    admin = make_user(is_superuser=True)
    shape = ("test", secrets.token_hex(4))

    def build(user_id: int | None = None, after: str = ""):
        return app_summaries_visible(user_id=user_id, after=after)

    assert len(compiled_rows(shape, build, after="a")) == 4  # every app: the superuser's SQL
    with pytest.raises(ValueError, match="this shape takes"):
        compiled_rows(shape, build, user_id=alice.pk, after="a")
    assert [r["name"] for r in app_summaries_page(user=admin, after="a", limit=5)][:1] == ["a-one"]
    assert [r["name"] for r in app_summaries_page(user=alice, after="a", limit=5)] == [
        "a-one",
        "a-three",
        "a-two",
    ]


def test_a_value_the_query_does_not_take_as_it_is_is_refused(two_teams):
    alice, _ = two_teams

    def build(user_id: int, search: str):
        return app_summaries_visible(user_id=user_id, search=search)  # icontains escapes and wraps it

    with pytest.raises(ValueError, match="'search' is not one parameter of the query"):
        compiled_rows(("test", secrets.token_hex(4)), build, user_id=alice.pk, search="a")


def test_the_dashboards_pages_of_one_team_are_never_another_teams(two_teams):
    alice, bob = two_teams
    teams = {user: user.memberships.get().team for user in (alice, bob)}
    for _ in range(2):  # the second time from the compiled SQL
        pages = Paginator(AppStatusRows(team_id=teams[alice].pk, page_size=2), 2)
        assert pages.count == 3
        assert [row["name"] for row in pages.page(1).object_list] == ["a-one", "a-three"]
        assert [row["name"] for row in pages.page(2).object_list] == ["a-two"]
        bobs = Paginator(AppStatusRows(team_id=teams[bob].pk, page_size=2), 2)
        assert [row["name"] for row in bobs.page(1).object_list] == ["b-one"]
    searched = Paginator(AppStatusRows(team_id=teams[alice].pk, page_size=2, search="T"), 2)
    assert searched.count == 2 and [row["name"] for row in searched.page(1).object_list] == [
        "a-three",
        "a-two",
    ]
    row = Paginator(AppStatusRows(team_id=teams[bob].pk, page_size=2), 2).page(1).object_list[0]
    assert set(row) == set(STATUS_FIELDS) and row["certified"] is False and row["build_id"] is None


def test_a_value_used_in_several_places_gets_each_callers_value_in_all_of_them(two_teams):
    alice, bob = two_teams
    teams = {user: user.memberships.get().team for user in (alice, bob)}
    shape = ("test", secrets.token_hex(4))

    def build(team_id: int):  # the team's id twice: the rows' filter and the count of its apps
        counted = App.objects.filter(team_id=team_id).order_by().values("team_id").annotate(n=Count("pk"))
        return (
            App.objects.filter(team_id=team_id)
            .annotate(apps=Subquery(counted.values("n")))
            .order_by("name")
            .values("name", "apps")
        )

    for _ in range(2):
        assert compiled_rows(shape, build, team_id=teams[alice].pk) == [
            {"name": name, "apps": 3} for name in ("a-one", "a-three", "a-two")
        ]
        assert compiled_rows(shape, build, team_id=teams[bob].pk) == [{"name": "b-one", "apps": 1}]


def test_a_value_written_into_the_querys_text_is_refused(two_teams):
    alice, _ = two_teams
    team = alice.memberships.get().team

    def build(team_id: int):  # also in the SQL's text: a later caller's value would not reach that place
        return (
            App.objects.filter(team_id=team_id).annotate(seen=RawSQL(str(team_id), ())).values("name", "seen")
        )

    with pytest.raises(ValueError, match="'team_id' is written into the query's text"):
        compiled_rows(("test", secrets.token_hex(4)), build, team_id=team.pk)
