"""berth.nodes against a real 3-node swarm: list, drain/activate, label, remove, the join command, and the
refusals (the last active node, a node with running tasks, a constraint no node satisfies)."""

import pytest
from berth.nodes import services
from berth.nodes.selectors import NodeError, node_find, node_join_command, node_list

from tests.cluster import harness
from tests.conftest import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


def test_list_shows_every_node_with_its_state_address_and_resources(healthy_cluster, on_cluster):
    nodes = node_list()
    assert [n.hostname for n in nodes] == ["berthc-node1", "berthc-node2", "berthc-node3"]
    assert nodes[0].role == "manager" and nodes[0].leader
    assert {n.address for n in nodes} == {node.address for node in healthy_cluster.nodes}
    for node in nodes:
        assert node.state == "ready" and node.availability == "active"
        assert node.cpus > 0 and node.memory_mb > 0


def test_a_node_is_found_by_hostname_id_or_id_prefix(healthy_cluster, on_cluster):
    worker = healthy_cluster.workers[0]
    assert node_find(node=worker.name).id == worker.node_id
    assert node_find(node=worker.node_id).hostname == worker.name
    assert node_find(node=worker.node_id[:6]).hostname == worker.name
    with pytest.raises(NodeError, match="no node 'nope'.*berthc-node1"):
        node_find(node="nope")


def test_join_command_names_the_manager_and_the_worker_token(healthy_cluster, on_cluster):
    join = node_join_command()
    token = healthy_cluster.manager.client.swarm.attrs["JoinTokens"]["Worker"]
    assert join["command"] == f"sh deploy/join-node.sh {healthy_cluster.manager.address}:2377 {token}"


def test_drain_then_activate(healthy_cluster, on_cluster, db):
    worker = healthy_cluster.workers[0].name
    assert services.node_drain(node=worker).availability == "drain"
    assert services.node_drain(node=worker).availability == "drain"  # again: nothing to do
    assert services.node_activate(node=worker).availability == "active"


def test_draining_the_last_active_node_is_refused(healthy_cluster, on_cluster, db):
    for node in healthy_cluster.workers:
        services.node_drain(node=node.name)
    with pytest.raises(NodeError, match="berthc-node1 is the last active node"):
        services.node_drain(node="berthc-node1")
    assert node_find(node="berthc-node1").availability == "active"


def test_labels_are_set_and_removed(healthy_cluster, on_cluster, db):
    node = healthy_cluster.workers[1].name
    labels = services.labels_parse(expressions=["zone=b", "disk=ssd"])
    assert services.node_label(node=node, labels=labels).labels == {"zone": "b", "disk": "ssd"}
    removed = services.node_label(node=node, labels=services.labels_parse(expressions=["disk-"]))
    assert removed.labels == {"zone": "b"}


@pytest.mark.parametrize("bad", ["Zone=a", "zone", "zone=a b", "-x=1", "zone=" + "a" * 64])
def test_bad_labels_are_refused(bad):
    with pytest.raises(ValueError):
        services.labels_parse(expressions=[bad])


def test_removing_a_node_with_running_tasks_is_refused_until_it_is_drained(healthy_cluster, cluster_app):
    tasks = cluster_app.deploy(replicas=3)
    assert len({t.node_id for t in tasks}) == 3  # spread: one replica per node
    worker = healthy_cluster.workers[1]
    with pytest.raises(NodeError, match=f"{worker.name} runs 1 tasks: drain it first"):
        services.node_remove(node=worker.name)
    with pytest.raises(NodeError, match="is a manager"):
        services.node_remove(node=healthy_cluster.manager.name)
    assert node_find(node=worker.name).tasks == 1  # untouched
    services.node_drain(node=worker.name)
    wait_for(lambda: node_find(node=worker.name).tasks == 0, timeout=60, message="the drained node to empty")
    removed = services.node_remove(node=worker.name)
    assert removed.hostname == worker.name
    assert worker.name not in [n.hostname for n in node_list()]
    # back in: the removed node leaves its old swarm and joins again with the worker token
    worker.client.swarm.leave(force=True)
    worker.client.swarm.join(
        remote_addrs=[f"{healthy_cluster.manager.address}:2377"],
        join_token=healthy_cluster.manager.client.swarm.attrs["JoinTokens"]["Worker"],
        listen_addr="0.0.0.0:2377",
        advertise_addr=worker.address,
    )
    worker.node_id = worker.client.info()["Swarm"]["NodeID"]
    harness.wait_nodes_ready(healthy_cluster, 3)


def test_replicas_spread_across_nodes(healthy_cluster, cluster_app):
    tasks = cluster_app.deploy(replicas=3)
    # one replica per node, each reached at its node's own address (the manager's too)
    assert sorted(t.node_address for t in tasks) == sorted(
        [healthy_cluster.manager.address, *(w.address for w in healthy_cluster.workers)]
    )


def test_constraints_place_replicas_on_matching_nodes(healthy_cluster, cluster_app):
    zone_a = healthy_cluster.workers[0]
    services.node_label(node=zone_a.name, labels={"zone": "a"})
    constraints = services.constraints_parse(expressions=["zone=a"])
    assert constraints == ["node.labels.zone==a"]
    assert services.constraints_satisfiable(constraints=constraints)
    tasks = cluster_app.deploy(replicas=2, constraints=constraints)
    assert {t.node_id for t in tasks} == {zone_a.node_id}


def test_a_constraint_no_node_satisfies_is_a_clear_error(healthy_cluster, cluster_app):
    from berth.runtime.scheduler import SchedulerError

    constraints = services.constraints_parse(expressions=["zone=nowhere"])
    assert not services.constraints_satisfiable(constraints=constraints)
    with pytest.raises(SchedulerError, match="no suitable node"):
        cluster_app.deploy(replicas=1, constraints=constraints, timeout=10)
