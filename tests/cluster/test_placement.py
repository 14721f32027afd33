"""Placement: `berth ps:place` keeps a process on labelled nodes; refused when no node has the labels; the
constraints stored on the Formation row are what the scheduler gets (ProcessSpec.constraints)."""

import argparse

import pytest
from berth.apps.models import Formation
from berth.cli import nodes as cli
from berth.nodes import services
from berth.nodes.selectors import NodeError
from rest_framework.test import APIClient

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


def test_place_a_process_on_labelled_nodes(healthy_cluster, cluster_app):
    zone_b = healthy_cluster.workers[1]
    services.node_label(node=zone_b.name, labels={"zone": "b"})
    row = services.formation_place(app=cluster_app.app, process="web", expressions=["zone=b"], actor=None)
    assert row.constraints == ["node.labels.zone==b"]
    assert services.constraints_display(row.constraints) == ["zone=b"]
    # what deploys.rollout.process_specs passes on (ProcessSpec.constraints) from the Formation row
    tasks = cluster_app.deploy(replicas=2, constraints=Formation.objects.get(pk=row.pk).constraints)
    assert {t.node_id for t in tasks} == {zone_b.node_id}
    # and back to anywhere
    assert (
        services.formation_place(app=cluster_app.app, process="web", expressions=[], actor=None).constraints
        == []
    )


def test_placement_no_node_satisfies_is_refused_and_nothing_changes(healthy_cluster, cluster_app):
    with pytest.raises(NodeError, match="no active node has labels zone=mars"):
        services.formation_place(app=cluster_app.app, process="web", expressions=["zone=mars"], actor=None)
    assert Formation.objects.get(app=cluster_app.app, process="web").constraints == []
    with pytest.raises(ValueError, match="no process type 'worker'"):
        services.formation_place(app=cluster_app.app, process="worker", expressions=[], actor=None)
    with pytest.raises(ValueError, match="label=value"):
        services.formation_place(app=cluster_app.app, process="web", expressions=["zone"], actor=None)


def test_ps_place_over_the_api_and_cli(healthy_cluster, cluster_app, live_server, monkeypatch):
    from berth.accounts.services import token_create

    owner = cluster_app.team.memberships.first().user
    _, token = token_create(user=owner, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/v1/apps/{cluster_app.app.name}/placement"
    refused = client.put(url, {"process": "web", "constraints": ["zone=mars"]}, format="json")
    assert refused.status_code == 409 and "no active node has labels zone=mars" in refused.json()["detail"]
    bad = client.put(url, {"process": "web", "constraints": ["zone"]}, format="json")
    assert bad.status_code == 400

    services.node_label(node=healthy_cluster.workers[0].name, labels={"zone": "a"})
    monkeypatch.setenv("BERTH_URL", live_server.url)
    monkeypatch.setenv("BERTH_TOKEN", token)
    placed, text = cli.ps_place(
        argparse.Namespace(app=cluster_app.app.name, process="web", constraints=["zone=a"])
    )
    assert placed == {"process": "web", "constraints": ["zone=a"]}
    assert "runs on zone=a" in text
    assert client.get(url).json() == [{"process": "web", "constraints": ["zone=a"]}]
