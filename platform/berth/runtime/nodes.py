"""The swarm's machines as this manager's engine sees them: list, update (availability, labels), remove, the join
token, and which apps run where.

berth.nodes decides what may be done to a node (the last active one is not drained, a manager is not removed…);
this module only does it, and returns plain data (NodeInfo, NodeState, JoinInfo), never the SDK's objects.
"""

from dataclasses import asdict, dataclass

import docker
import docker.errors

from berth.runtime.client import docker_client
from berth.runtime.scheduler import LABEL_APP, is_ours

NANOSECONDS = 1_000_000_000
UPDATE_ATTEMPTS = 5


class NodeError(Exception):
    """A node operation was refused or failed; the message is for the administrator."""


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


@dataclass(frozen=True)
class NodeState:
    """What the watcher follows of a node: is it up, and what to call it in an app's events."""

    id: str
    hostname: str
    address: str  # as the node reports it (Status.Addr), "" when unknown
    state: str  # ready, down, unknown, disconnected


@dataclass(frozen=True)
class JoinInfo:
    """What a new worker needs to join: this manager's address (host:port) and the worker join token."""

    manager: str
    token: str


def _address(node: dict) -> str:
    address = (node.get("Status") or {}).get("Addr") or ""
    if address in ("", "0.0.0.0"):
        address = ((node.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
    return address


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


class SwarmNodes:
    """The nodes of the swarm this engine manages. Made only on a manager: NodeError otherwise."""

    def __init__(self, client: docker.DockerClient | None = None):
        self.client = client or docker_client()
        swarm = self.client.api.info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise NodeError(
                "this engine is not a swarm manager: node operations need Berth's manager (DOCKER_HOST)"
            )
        self._swarm = swarm

    def nodes(self) -> list[NodeInfo]:
        """Every node, in the engine's order, with its count of running tasks."""
        tasks = self._running_tasks()
        return [_info(node, tasks) for node in self.client.api.nodes()]

    def states(self) -> list[NodeState]:
        """Every node's state, without counting tasks (cheap enough for each loop of the watcher)."""
        return [
            NodeState(
                id=node["ID"],
                hostname=(node.get("Description") or {}).get("Hostname", node["ID"][:12]),
                address=(node.get("Status") or {}).get("Addr", ""),
                state=(node.get("Status") or {}).get("State", "unknown"),
            )
            for node in self.client.api.nodes()
        ]

    def apps_on(self, node_id: str) -> list[str]:
        """The apps (their names, sorted) with tasks on the node."""
        return sorted(
            {
                labels[LABEL_APP]
                for task in self.client.api.tasks(filters={"node": node_id})
                if LABEL_APP in (labels := task.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {})
                and is_ours(labels)
            }
        )

    def update(
        self, node_id: str, *, availability: str | None = None, labels: dict[str, str] | None = None
    ) -> None:
        """Set the node's availability (active, pause, drain) and/or replace its labels. Swarm refuses an update
        of a spec that changed since it was read: read it again and retry, a few times."""
        change = {}
        if availability is not None:
            change["Availability"] = availability
        if labels is not None:
            change["Labels"] = labels
        for _attempt in range(UPDATE_ATTEMPTS):
            raw = self.client.api.inspect_node(node_id)
            spec = {**raw["Spec"], **change}
            try:
                self.client.api.update_node(node_id, raw["Version"]["Index"], spec)
                return
            except docker.errors.APIError as exc:
                if "out of sequence" in str(exc.explanation or exc).lower():
                    continue  # changed by someone else meanwhile: read it again
                raise NodeError(f"could not update node: {exc.explanation or exc}") from exc
        raise NodeError("the node kept changing under us; try again")

    def remove(self, node_id: str, *, force: bool) -> None:
        """Take the node out of the swarm (`force` for a node still up). NodeError with the engine's reason."""
        try:
            self.client.api.remove_node(node_id, force=force)
        except docker.errors.APIError as exc:
            raise NodeError(str(exc.explanation or exc)) from exc

    def join(self, *, manager_port: int) -> JoinInfo:
        """This manager's address as the swarm knows it (its node address and `manager_port` when it is not
        listed) and the worker join token."""
        manager = next(
            (
                m["Addr"]
                for m in self._swarm.get("RemoteManagers") or []
                if m.get("NodeID") == self._swarm.get("NodeID")
            ),
            f"{self._swarm.get('NodeAddr')}:{manager_port}",
        )
        token = self.client.api.inspect_swarm()["JoinTokens"]["Worker"]
        return JoinInfo(manager=manager, token=token)

    def _running_tasks(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self.client.api.tasks(filters={"desired-state": "running"}):
            if task.get("Status", {}).get("State") == "running" and task.get("NodeID"):
                counts[task["NodeID"]] = counts.get(task["NodeID"], 0) + 1
        return counts
