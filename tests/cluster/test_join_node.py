"""deploy/join-node.sh on a machine with Docker but in no swarm (a 4th namespace on the cluster's network):
a malformed token, a wrong token, the right one, and joining twice."""

import subprocess

import pytest
from berth.nodes.selectors import node_join_command, node_list

from tests.cluster import harness
from tests.conftest import REPO_DIR, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


def test_join_node_script(healthy_cluster, on_cluster):
    spare = harness.spare_node(4)

    def join(manager: str, token: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                *healthy_cluster.ip_netns_exec(spare, "env", f"DOCKER_HOST={spare.docker_host}"),
                *["sh", str(REPO_DIR / "deploy/join-node.sh"), manager, token],
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )

    command = node_join_command()
    manager, token = command["manager"], command["token"]
    try:
        malformed = join(manager, "hunter2")
        assert malformed.returncode == 1
        assert "'hunter2' is not a swarm join token" in malformed.stderr

        # right format, wrong secret: the manager refuses it
        wrong = join(manager, token[:-8] + "aaaaaaaa")
        assert wrong.returncode == 1
        assert f"the manager at {manager} refused the token" in wrong.stderr
        assert spare.client.info()["Swarm"]["LocalNodeState"] == "inactive"  # nothing half-done

        joined = join(manager.partition(":")[0], token)  # the port defaults to 2377
        assert joined.returncode == 0, joined.stderr
        assert "Joined." in joined.stdout
        wait_for(
            lambda: any(n.hostname == spare.name and n.state == "ready" for n in node_list()),
            timeout=30,
            message="the new node ready",
        )
        again = join(manager, token)
        assert again.returncode == 1 and "already in a swarm" in again.stderr
    finally:
        if spare.client.info()["Swarm"]["LocalNodeState"] != "inactive":
            spare.client.swarm.leave(force=True)
        api = healthy_cluster.manager.client.api
        for node in api.nodes():
            if node["Description"].get("Hostname") == spare.name:
                api.remove_node(node["ID"], force=True)
        spare.kill()
        harness.run("ip", "netns", "del", spare.netns, check=False)
