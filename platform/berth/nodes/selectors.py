"""Reads about the swarm's machines: what `berth nodes` lists and what the services decide on.

Nodes are platform-wide (every team's apps share them). Who may see them is one rule, `can_see_nodes`, which the
API, the dashboard and the WebSocket consumers all ask: platform administrators (superusers) see the nodes, their
addresses and their load; nobody else sees any of it, whatever their team role (a team's admin is a tenant like any
other: the machines' addresses and what else runs on them are other teams' business). An app's processes still say
which node they run on by its opaque Swarm id, never by address (`process_rows_visible_to`).
"""

from django.conf import settings

# NodeError and NodeInfo are the engine's (it raises and returns them); the API and the CLI read them from here
from berth.runtime.nodes import NodeError, NodeInfo, SwarmNodes

MANAGER_PORT = 2377


def can_see_nodes(user) -> bool:
    """The one rule: may `user` see the swarm's nodes, their addresses and their load?"""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_superuser)


def process_rows_visible_to(*, user, rows: list[dict]) -> list[dict]:
    """An app's process rows (`berth ps`) as `user` may see them: the node's address only for who can see nodes."""
    if can_see_nodes(user):
        return rows
    return [{**row, "address": None} if "address" in row else row for row in rows]


class NodeNotFound(NodeError):
    """No node has that hostname, id or id prefix."""


def node_list(*, swarm: SwarmNodes | None = None) -> list[NodeInfo]:
    """Every node of the swarm, managers first, then by hostname. NodeError when this engine is no manager."""
    nodes = (swarm or SwarmNodes()).nodes()
    return sorted(nodes, key=lambda n: (n.role != "manager", n.hostname, n.id))


def node_find(*, node: str, swarm: SwarmNodes | None = None) -> NodeInfo:
    """The node named by its hostname, its id or a unique prefix of its id (at least 4 characters)."""
    nodes = node_list(swarm=swarm)
    exact = [n for n in nodes if node in (n.id, n.hostname)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise NodeError(f"{len(exact)} nodes are called {node!r}: name one by its id")
    prefixed = [n for n in nodes if len(node) >= 4 and n.id.startswith(node)]
    if len(prefixed) == 1:
        return prefixed[0]
    known = ", ".join(n.hostname for n in nodes)
    raise NodeNotFound(f"no node {node!r} (nodes: {known})")


def node_join_command(*, swarm: SwarmNodes | None = None) -> dict:
    """What joins a fresh Debian machine as a worker: `deploy/join-node.sh <manager address> <worker token>
    [<registry>]` (the registry when BERTH_REGISTRY is set)."""
    join = (swarm or SwarmNodes()).join(manager_port=MANAGER_PORT)
    manager, token = join.manager, join.token
    # the node pulls releases' images from Berth's registry: join-node.sh lists it as an insecure (HTTP) registry
    registry = settings.BERTH_REGISTRY
    answer = {
        "manager": manager,
        "token": token,
        "registry": registry,
        "command": " ".join(["sh deploy/join-node.sh", manager, token, *([registry] if registry else [])]),
    }
    if registry.startswith(("127.", "localhost")):
        answer["warning"] = (
            f"BERTH_REGISTRY is {registry}, which other machines cannot reach: set it to this manager's address "
            "(e.g. 10.0.0.5:5000) and restart Berth before adding nodes"
        )
    return answer
