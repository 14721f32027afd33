"""The nodes API and `berth nodes…` commands against the real 3-node swarm, as a platform admin (superuser);
team roles get 403 (tests/api/test_permission_matrix.py covers every role)."""

import argparse

import pytest
from berth.cli import nodes as cli
from rest_framework.test import APIClient

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


@pytest.fixture
def admin_user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(username="root-admin", password="x", email="r@x.test")


@pytest.fixture
def admin_client(admin_user):
    from berth.accounts.services import token_create

    _, clear = token_create(user=admin_user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
    client.token = clear
    return client


def test_admin_lists_nodes(healthy_cluster, on_cluster, admin_client):
    response = admin_client.get("/api/v1/nodes")
    assert response.status_code == 200
    rows = response.json()
    assert [r["hostname"] for r in rows] == ["berthc-node1", "berthc-node2", "berthc-node3"]
    assert set(rows[0]) >= {"state", "availability", "address", "labels", "cpus", "memory_mb", "tasks"}


def test_a_team_owner_is_not_a_platform_admin(healthy_cluster, on_cluster, db):
    from berth.accounts.services import team_create, token_create
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user(username="owner", password="x")
    team_create(name="acme", actor=owner)
    _, clear = token_create(user=owner, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
    response = client.patch("/api/v1/nodes/berthc-node2", {"availability": "drain"}, format="json")
    assert response.status_code == 403
    assert "platform-admin" in response.json()["detail"]


def test_drain_label_activate_and_refusals_over_the_api(healthy_cluster, on_cluster, admin_client):
    url = "/api/v1/nodes/berthc-node2"
    drained = admin_client.patch(url, {"availability": "drain"}, format="json")
    assert drained.status_code == 200 and drained.json()["availability"] == "drain"
    labelled = admin_client.patch(url, {"labels": {"zone": "a"}}, format="json")
    assert labelled.json()["labels"] == {"zone": "a"}
    assert (
        admin_client.patch(url, {"availability": "active"}, format="json").json()["availability"] == "active"
    )

    bad = admin_client.patch(url, {"availability": "sideways"}, format="json")
    assert bad.status_code == 400
    bad_label = admin_client.patch(url, {"labels": {"Zone!": "a"}}, format="json")
    assert bad_label.status_code == 400 and "label" in str(bad_label.json())
    missing = admin_client.get("/api/v1/nodes/no-such-node")
    assert missing.status_code == 404 and "no node 'no-such-node'" in missing.json()["detail"]
    manager = admin_client.delete("/api/v1/nodes/berthc-node1")
    assert manager.status_code == 409 and "is a manager" in manager.json()["detail"]


def test_last_active_node_refused_over_the_api(healthy_cluster, on_cluster, admin_client):
    for name in ("berthc-node2", "berthc-node3"):
        admin_client.patch(f"/api/v1/nodes/{name}", {"availability": "drain"}, format="json")
    refused = admin_client.patch("/api/v1/nodes/berthc-node1", {"availability": "drain"}, format="json")
    assert refused.status_code == 409
    assert "last active node" in refused.json()["detail"]


def test_cli_commands(healthy_cluster, on_cluster, admin_client, live_server, monkeypatch, settings):
    monkeypatch.setenv("BERTH_URL", live_server.url)
    monkeypatch.setenv("BERTH_TOKEN", admin_client.token)
    rows, text = cli.nodes(argparse.Namespace())
    assert len(rows) == 3
    assert text.splitlines()[0].split() == [
        "HOSTNAME", "ROLE", "STATE", "AVAILABILITY", "ADDRESS", "CPUS", "MEMORY", "TASKS", "LABELS",
    ]  # fmt: skip
    assert "berthc-node1 *" in text  # the leader
    join, text = cli.nodes_add(argparse.Namespace())
    assert f"sh deploy/join-node.sh {healthy_cluster.manager.address}:2377 SWMTKN-" in text
    settings.BERTH_REGISTRY = (
        "127.0.0.1:5000"  # make up's one-machine default: other machines cannot pull there
    )
    join, text = cli.nodes_add(argparse.Namespace())
    assert join["command"].endswith(" 127.0.0.1:5000")
    assert "warning: BERTH_REGISTRY is 127.0.0.1:5000, which other machines cannot reach" in text
    node, text = cli.nodes_label(argparse.Namespace(node="berthc-node3", labels=["zone=b", "ssd=yes"]))
    assert node["labels"] == {"zone": "b", "ssd": "yes"} and "zone=b" in text
    node, _ = cli.nodes_label(argparse.Namespace(node="berthc-node3", labels=["ssd-"]))
    assert node["labels"] == {"zone": "b"}
    node, text = cli.nodes_drain(argparse.Namespace(node="berthc-node3"))
    assert node["availability"] == "drain" and text.startswith("Draining berthc-node3")
    node, _ = cli.nodes_activate(argparse.Namespace(node="berthc-node3"))
    assert node["availability"] == "active"
