"""Search and paging of the apps list and the audit log happen on the server, and a page costs the same number of
queries whatever the number of rows behind it."""

import pytest
from berth.apps.models import App
from berth.audit.models import AuditEvent
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db


def make_apps(team, count: int, start: int = 0) -> None:
    App.objects.bulk_create(App(team=team, name=f"app-{i:04d}") for i in range(start, start + count))


def queries_of(client, url: str, params: dict | None = None) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200, response.status_code
    return len(captured.captured_queries), response.content.decode()


def test_apps_list_searches_by_name_and_pages(client_as, world):
    make_apps(world.team, 150)
    client = client_as("viewer")
    _, first = queries_of(client, "/apps/")
    assert first.count('<tr data-app="') == 100 and "page 1 of 2" in first
    _, second = queries_of(client, "/apps/", {"page": 2})
    assert second.count('<tr data-app="') == 51 and 'data-app="demo"' in second
    _, found = queries_of(client, "/apps/", {"q": "app-012"})
    assert found.count('<tr data-app="') == 10 and 'data-app="app-0120"' in found
    _, none = queries_of(client, "/apps/", {"q": "zzz"})
    assert "No app name contains" in none


def test_the_page_asked_is_read_with_its_count_and_alarm_in_one_statement(client_as, world):
    make_apps(world.team, 150)
    client = client_as("viewer")
    client.get("/apps/", {"page": 2})  # a page whose SQL is compiled (a number not seen yet: page 1 first)
    with CaptureQueriesContext(connection) as captured:
        second = client.get("/apps/", {"page": 2}).content.decode()
    of_apps = [q["sql"] for q in captured.captured_queries if '"apps_app"' in q["sql"]]
    # the rows, the count and whether a certificate is in alarm (none: the banner's list is not read)
    assert len(of_apps) == 1 and "COUNT(" in of_apps[0] and '"certs_certificate"' in of_apps[0], of_apps
    assert (
        second.count('<tr data-app="') == 51 and "page 2 of 2" in second and 'id="cert-alarm"' not in second
    )
    # past the last page, or not a page number: the Paginator's own choice (the last page, the first)
    for asked, shown, rows in (
        ("9", "page 2 of 2", 51),
        ("9" * 40, "page 2 of 2", 51),
        ("²", "page 1 of 2", 100),
    ):
        page = client.get("/apps/", {"page": asked})
        assert page.status_code == 200, (asked, page.status_code)
        assert shown in page.content.decode() and page.content.decode().count('<tr data-app="') == rows, asked


def test_apps_status_json_follows_the_same_page(client_as, world):
    make_apps(world.team, 120)
    data = client_as("viewer").get("/apps/status.json", {"q": "app-", "page": 2}).json()
    assert [a["name"] for a in data["apps"]] == [f"app-{i:04d}" for i in range(100, 120)]


def test_a_page_of_100_apps_costs_the_same_queries_for_120_or_600(client_as, world):
    client = client_as("owner")
    make_apps(world.team, 120)
    few, _ = queries_of(client, "/apps/")
    few_json, _ = queries_of(client, "/apps/status.json")
    make_apps(world.team, 480, start=120)
    many, page = queries_of(client, "/apps/")
    many_json, _ = queries_of(client, "/apps/status.json")
    assert page.count('<tr data-app="') == 100
    assert many == few and many_json == few_json, (few, many, few_json, many_json)
    print(f"apps list: {few} queries with 121 apps, {many} with 601; status.json {few_json} / {many_json}")


def test_a_page_of_100_audit_entries_costs_the_same_queries_for_150_or_1500(client_as, world):
    def add(count: int) -> None:
        AuditEvent.objects.bulk_create(
            AuditEvent(
                team=world.team,
                actor=world.users["member"],
                action="config.update",
                target="demo",
                data={"set": [f"K{i}"], "unset": []},
            )
            for i in range(count)
        )

    client = client_as("admin")
    add(150)
    few, _ = queries_of(client, "/teams/acme/audit")
    few_feed, _ = queries_of(client, "/teams/acme/activity")
    add(1350)
    many, page = queries_of(client, "/teams/acme/audit", {"page": 3})
    many_feed, _ = queries_of(client, "/teams/acme/activity")
    assert page.count("<li data-action=") == 100
    assert many == few and many_feed == few_feed, (few, many, few_feed, many_feed)
    print(f"audit log: {few} queries with 150 entries, {many} with 1,500; feed {few_feed} / {many_feed}")
