"""The team activity feed and the audit log pages: what changed in words, newest first, kinds and search, paged,
who may see which."""

import pytest
from berth.accounts.selectors import team_members
from berth.accounts.services import membership_role_change
from berth.apps.services import domain_add
from berth.audit.models import AuditEvent
from berth.deploys.formation import formation_update
from berth.releases.services import config_update

pytestmark = pytest.mark.django_db


def feed(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_feed_says_what_changed_newest_first_without_config_values(client_as, world):
    owner = world.users["owner"]
    formation_update(app=world.app, changes=[{"process": "web", "replicas": 3}], actor=owner)
    membership_role_change(
        membership=team_members(team=world.team).get(user=world.users["viewer"]), role="member", actor=owner
    )
    domain_add(app=world.app, hostname="demo.example.test", actor=owner)
    body = feed(client_as("viewer").get("/teams/acme/activity"))
    assert "scaled web 1 → 3" in body
    assert "role of the-viewer: viewer → member" in body
    assert "added domain demo.example.test to demo" in body
    assert "config: added SECRET_TOKEN" in body
    assert "s3cr3t-value" not in body
    # newest first: the domain (last made) before the scale (first made)
    assert body.index("demo.example.test") < body.index("scaled web")


def test_feed_filters_by_kind_and_app_and_searches(client_as, world):
    formation_update(app=world.app, changes=[{"process": "web", "replicas": 2}], actor=world.users["owner"])
    client = client_as("member")
    scale = feed(client.get("/teams/acme/activity", {"kind": "scale"}))
    assert 'data-action="formation.update"' in scale and 'data-action="config.update"' not in scale
    found = feed(client.get("/teams/acme/activity", {"q": "SECRET_TOKEN"}))
    assert 'data-action="config.update"' in found and 'data-action="formation.update"' not in found
    nothing = feed(client.get("/teams/acme/activity", {"q": "no-such-thing-here"}))
    assert 'id="activity-empty"' in nothing and "Nothing matches." in nothing


def test_feed_pages_fifty_at_a_time(client_as, world):
    AuditEvent.objects.bulk_create(
        AuditEvent(team=world.team, action="domain.add", target=f"n{i}.example.test", data={"app": "demo"})
        for i in range(120)
    )
    client = client_as("viewer")
    first = feed(client.get("/teams/acme/activity", {"kind": "domains"}))
    assert first.count('data-action="domain.add"') == 50 and "n119.example.test" in first
    assert "page 1 of 3" in first and "page=2" in first
    last = feed(client.get("/teams/acme/activity", {"kind": "domains", "page": 3}))
    assert last.count('data-action="domain.add"') == 20 and "n0.example.test" in last


def test_activity_for_members_audit_log_for_admins_outsiders_see_neither(client_as, world):
    assert client_as("viewer").get("/teams/acme/audit").status_code == 403
    assert client_as("outsider").get("/teams/acme/activity").status_code == 404
    assert client_as("outsider").get("/teams/acme/audit").status_code == 404
    body = feed(client_as("admin").get("/teams/acme/audit", {"q": "membership"}))
    assert 'data-action="membership.add"' in body and 'data-action="release.create"' not in body


def test_team_page_shows_recent_activity_with_links(client_as, world):
    config_update(app=world.app, changes={"OTHER": "x"}, actor=world.users["owner"])
    body = feed(client_as("viewer").get("/teams/acme/"))
    assert 'id="recent-activity"' in body and "/teams/acme/activity" in body
    assert 'href="/apps/demo/releases/3/"' in body  # the release the config change made
