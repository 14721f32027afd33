"""What the engine reports of itself, its app containers and the swarm's nodes, as plain data: for the metrics
sampler (berth.observe.metrics) and the platform's health checks (berth.observe.health).

CPU and memory are computed from Docker's stats API as `docker stats` computes them.
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
import docker.errors
import requests

from berth.runtime.client import docker_client
from berth.runtime.scheduler import LABEL_APP, is_ours

MB = 1024 * 1024


@dataclass(frozen=True)
class ContainerUsage:
    """What one running container uses, and Docker's health check of it (None when its image has none)."""

    cpu_percent: float
    memory_mb: float
    health: str | None


@dataclass(frozen=True)
class NodeUsage:
    """One node of the swarm as Swarm knows it, with its count of running tasks."""

    id: str
    hostname: str
    state: str
    availability: str
    address: str
    memory_total_mb: float | None
    tasks: int


@dataclass(frozen=True)
class SwarmReading:
    """The swarm's nodes, which of them this engine is, and where this engine keeps its data."""

    nodes: list[NodeUsage]
    local_id: str | None
    docker_root: str


@dataclass(frozen=True)
class SwarmMembership:
    """This engine's place in a swarm: its state ("active" when in one) and whether it is a manager."""

    state: str | None
    manager: bool


def cpu_percent(stats: dict) -> float:
    """CPU use of a container as `docker stats` computes it: its share of the host's time, times the CPUs."""
    cpu, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (previous.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if used <= 0 or system <= 0:
        return 0.0
    return round(used / system * cpus * 100, 2)


def memory_mb(stats: dict) -> float:
    """Memory in use without the page cache the kernel can drop (what `docker stats` shows)."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    return round(max(memory.get("usage", 0) - cache, 0) / MB, 1)


def health_from_status(status: str) -> str | None:
    """Docker's health check as `docker ps` shows it in a status: "Up 5 seconds (healthy)", "Up 1 second
    (health: starting)", "Up 3 minutes (unhealthy)"."""
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(healthy)" in status:
        return "healthy"
    if "health: starting" in status:
        return "starting"
    return None


def engine_ping(*, timeout: int = 5) -> None:
    """Raises unless the engine answers."""
    docker_client(timeout=timeout).ping()


def engine_data_root(*, timeout: int = 5) -> str:
    """Where the engine keeps images, containers and volumes (`docker info`'s DockerRootDir)."""
    return docker_client(timeout=timeout).info().get("DockerRootDir") or "/var/lib/docker"


def swarm_membership(*, timeout: int = 5) -> SwarmMembership:
    swarm = docker_client(timeout=timeout).info().get("Swarm", {})
    return SwarmMembership(state=swarm.get("LocalNodeState"), manager=bool(swarm.get("ControlAvailable")))


class EngineStats:
    """Reads of this node's engine for the metrics sampler. `close` when done: it holds a pool of threads."""

    def __init__(self, client: docker.DockerClient | None = None, *, workers: int = 8):
        self.api = (client or docker_client()).api
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stats")

    def containers(self) -> dict[str, ContainerUsage]:
        """CPU % and memory of every running app container on this node by container id, sampled in parallel
        (each one-shot stats call takes about a second: Docker waits for a second reading to compute the CPU
        share)."""
        containers = [
            c
            for c in self.api.containers(filters={"label": LABEL_APP, "status": "running"})
            if is_ours(c.get("Labels"))
        ]

        def one(container: dict) -> tuple[str, ContainerUsage | None]:
            try:
                stats = self.api.stats(container["Id"], stream=False)
            except (docker.errors.APIError, requests.RequestException, ValueError):
                # it stopped meanwhile: Docker answers 404, or an empty body that is not JSON
                return container["Id"], None
            return container["Id"], ContainerUsage(
                cpu_percent=cpu_percent(stats),
                memory_mb=memory_mb(stats),
                health=health_from_status(container.get("Status", "")),
            )

        return {cid: value for cid, value in self.pool.map(one, containers) if value is not None}

    def apps(self) -> list[str]:
        """The apps with a service in the swarm, sorted."""
        services = [
            s for s in self.api.services(filters={"label": LABEL_APP}) if is_ours(s["Spec"].get("Labels"))
        ]
        return sorted({s["Spec"].get("Labels", {}).get(LABEL_APP, "") for s in services} - {""})

    def swarm(self) -> SwarmReading:
        info = self.api.info()
        running = Counter(
            t.get("NodeID")
            for t in self.api.tasks(filters={"desired-state": "running"})
            if (t.get("Status") or {}).get("State") == "running"
        )
        nodes = []
        for node in self.api.nodes():
            description = node.get("Description") or {}
            resources = description.get("Resources") or {}
            nodes.append(
                NodeUsage(
                    id=node["ID"],
                    hostname=description.get("Hostname", ""),
                    state=(node.get("Status") or {}).get("State", ""),
                    availability=(node.get("Spec") or {}).get("Availability", ""),
                    address=(node.get("Status") or {}).get("Addr", ""),
                    memory_total_mb=round(resources.get("MemoryBytes", 0) / MB, 1) or None,
                    tasks=running.get(node["ID"], 0),
                )
            )
        return SwarmReading(
            nodes=nodes,
            local_id=(info.get("Swarm") or {}).get("NodeID"),
            docker_root=info.get("DockerRootDir") or "/",
        )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
