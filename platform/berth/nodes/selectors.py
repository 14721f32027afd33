"""Reads about the swarm's machines: what `berth nodes` lists and what the services decide on.

Nodes are platform-wide (every team's apps share them). Who may see them is one rule, `can_see_nodes`, which the
API, the dashboard and the WebSocket consumers all ask: platform administrators (superusers) see the nodes, their
addresses and their load; nobody else sees any of it, whatever their team role (a team's admin is a tenant like any
other: the machines' addresses and what else runs on them are other teams' business). An app's processes still say
which node they run on by its opaque Swarm id, never by address (`process_rows_visible_to`).
"""

from dataclasses import asdict, dataclass

import docker
from django.conf import settings

from berth.runtime.client import docker_client

NANOSECONDS = 1_000_000_000
MANAGER_PORT = 2377


def can_see_nodes(user) -> bool:
    """The one rule: may `user` see the swarm's nodes, their addresses and their load?"""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_superuser)


def process_rows_visible_to(*, user, rows: list[dict]) -> list[dict]:
    """An app's process rows (`berth ps`) as `user` may see them: the node's address only for who can see nodes."""
    if can_see_nodes(user):
        return rows
    return [{**row, "address": None} if "address" in row else row for row in rows]


class NodeError(Exception):
    """A node operation was refused or failed; the message is for the administrator."""


class NodeNotFound(NodeError):
    """No node has that hostname, id or id prefix."""


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    role: str  # "manager" or "worker"
    leader: bool
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    address: str
    labels: dict[str, str]
    cpus: float
    memory_mb: int
    tasks: int  # running tasks (any service) on the node
    engine: str

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and self.availability == "active"

    def as_dict(self) -> dict:
        return asdict(self)


def _address(node: dict) -> str:
    address = (node.get("Status") or {}).get("Addr") or ""
    if address in ("", "0.0.0.0"):
        address = ((node.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
    return address


def _running_tasks(client: docker.DockerClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in client.api.tasks(filters={"desired-state": "running"}):
        if task.get("Status", {}).get("State") == "running" and task.get("NodeID"):
            counts[task["NodeID"]] = counts.get(task["NodeID"], 0) + 1
    return counts


def _info(node: dict, tasks: dict[str, int]) -> NodeInfo:
    description = node.get("Description") or {}
    resources = description.get("Resources") or {}
    spec = node.get("Spec") or {}
    return NodeInfo(
        id=node["ID"],
        hostname=description.get("Hostname", ""),
        role=spec.get("Role", ""),
        leader=bool((node.get("ManagerStatus") or {}).get("Leader")),
        state=(node.get("Status") or {}).get("State", "unknown"),
        availability=spec.get("Availability", ""),
        address=_address(node),
        labels=dict(spec.get("Labels") or {}),
        cpus=round((resources.get("NanoCPUs") or 0) / NANOSECONDS, 2),
        memory_mb=int((resources.get("MemoryBytes") or 0) // (1024 * 1024)),
        tasks=tasks.get(node["ID"], 0),
        engine=(description.get("Engine") or {}).get("EngineVersion", ""),
    )


def _swarm_client(client: docker.DockerClient | None) -> docker.DockerClient:
    client = client or docker_client()
    swarm = client.api.info().get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        raise NodeError(
            "this engine is not a swarm manager: node operations need Berth's manager (DOCKER_HOST)"
        )
    return client


def node_list(*, client: docker.DockerClient | None = None) -> list[NodeInfo]:
    """Every node of the swarm, managers first, then by hostname."""
    client = _swarm_client(client)
    tasks = _running_tasks(client)
    nodes = [_info(node, tasks) for node in client.api.nodes()]
    return sorted(nodes, key=lambda n: (n.role != "manager", n.hostname, n.id))


def node_find(*, node: str, client: docker.DockerClient | None = None) -> NodeInfo:
    """The node named by its hostname, its id or a unique prefix of its id (at least 4 characters)."""
    nodes = node_list(client=client)
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


def node_join_command(*, client: docker.DockerClient | None = None) -> dict:
    """What joins a fresh Debian machine as a worker: `deploy/join-node.sh <manager address> <worker token>
    [<registry>]` (the registry when BERTH_REGISTRY is set)."""
    client = _swarm_client(client)
    swarm = client.api.info()["Swarm"]
    manager = next(
        (m["Addr"] for m in swarm.get("RemoteManagers") or [] if m.get("NodeID") == swarm.get("NodeID")),
        f"{swarm.get('NodeAddr')}:{MANAGER_PORT}",
    )
    token = client.api.inspect_swarm()["JoinTokens"]["Worker"]
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
