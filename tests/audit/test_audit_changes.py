"""Audit entries say what changed: config keys (never values), replicas old -> new, roles old -> new, domains;
and a team's events are searched and filtered by kind on the server."""

import json

import pytest
from berth.accounts.services import membership_add, membership_role_change, team_create
from berth.apps.services import app_create, domain_add, domain_remove
from berth.audit.models import AuditEvent
from berth.audit.selectors import audit_events_search
from berth.deploys.formation import formation_update
from berth.releases.services import config_update, release_create
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    owner = get_user_model().objects.create_user(username="owner", email="o@example.test")
    team = team_create(name="shop", actor=owner)
    app = app_create(team=team, name="cart", actor=owner)
    release_create(
        app=app,
        image="cart:v1",
        procfile={"web": "serve"},
        description="Deploy 1",
        actor=owner,
        status="built",
    )
    return team, app, owner


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-id").first()


def test_config_update_records_added_changed_and_unset_keys_never_values(shop):
    team, app, owner = shop
    config_update(app=app, changes={"A_KEY": "value-one", "B_KEY": "value-two"}, actor=owner)
    config_update(
        app=app, changes={"A_KEY": "value-three", "C_KEY": "value-four", "B_KEY": None}, actor=owner
    )
    data = last("config.update").data
    assert data == {"set": ["A_KEY", "C_KEY"], "unset": ["B_KEY"], "added": ["C_KEY"]}
    stored = json.dumps(list(AuditEvent.objects.values_list("data", flat=True)))
    assert "value-" not in stored


def test_scale_records_replicas_old_and_new_per_process(shop):
    team, app, owner = shop
    formation_update(app=app, changes=[{"process": "web", "replicas": 3}], actor=owner)
    formation_update(app=app, changes=[{"process": "web", "replicas": 1, "memory_mb": 256}], actor=owner)
    data = last("formation.update").data
    assert data["web"]["replicas"] == 1 and data["web"]["was"]["replicas"] == 3
    assert data["web"]["memory_mb"] == 256 and "memory_mb" in data["web"]["was"]


def test_role_change_and_domains_are_recorded_with_what_changed(shop):
    team, app, owner = shop
    bob = get_user_model().objects.create_user(username="bob", email="b@example.test")
    membership = membership_add(team=team, user=bob, role="viewer", actor=owner)
    membership_role_change(membership=membership, role="admin", actor=owner)
    assert last("membership.role_change").data == {"from": "viewer", "to": "admin"}
    domain = domain_add(app=app, hostname="shop.example.test", actor=owner)
    domain_remove(domain=domain, actor=owner)
    assert last("domain.add").target == "shop.example.test" and last("domain.add").data["app"] == "cart"
    assert last("domain.remove").target == "shop.example.test"


def test_search_matches_keys_users_and_kinds_of_one_team_only(shop):
    team, app, owner = shop
    config_update(app=app, changes={"PAYMENT_URL": "x"}, actor=owner)
    formation_update(app=app, changes=[{"process": "web", "replicas": 2}], actor=owner)
    intruder = get_user_model().objects.create_user(username="intruder", email="i@example.test")
    other = team_create(name="elsewhere", actor=intruder)
    other_app = app_create(team=other, name="spy", actor=intruder)
    config_update(app=other_app, changes={"PAYMENT_URL": "y"}, actor=intruder)

    found = list(audit_events_search(team=team, query="payment_url"))
    # the change and the release it made ("Set PAYMENT_URL config vars"), both of cart, none of the other team
    assert [e.action for e in found] == ["release.create", "config.update"]
    assert {e.target for e in found} == {"cart", "cart v2"}
    scale = list(audit_events_search(team=team, kinds=["scale"]))
    assert [e.action for e in scale] == ["formation.update"]
    assert not audit_events_search(team=team, query="intruder").exists()
    assert {e.action for e in audit_events_search(team=team, app="cart")} >= {
        "config.update",
        "release.create",
    }
