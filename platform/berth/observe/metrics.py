"""Health and metrics: what each app's containers use and how they are doing, and what each node has left.

The sampler runs every few seconds (in the ship_logs process). Per app it writes one snapshot of its processes
(task state mapped to starting/healthy/unhealthy/crashed, restarts, CPU % and memory from Docker's stats API) to
the capped stream `berth:health:<app>`; per sample one snapshot of the swarm's nodes to `berth:nodes`. Consumers
send the newest snapshot; the series behind it (about an hour) is there for graphs. A slot whose restart count
grows becomes a `crashed` platform event.
"""

import json
import logging
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import redis
import requests

from berth.core.redis import redis_client
from berth.observe.services import as_text, event_record
from berth.runtime.client import docker_client
from berth.runtime.scheduler import LABEL_APP, TaskInfo, get_scheduler

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL = 5.0
SERIES_MAX = 720  # an hour of 5 s samples
NODES_KEY = "berth:nodes"
MB = 1024 * 1024

STARTING_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
CRASHED_STATES = {"failed", "rejected", "orphaned", "complete", "shutdown", "remove"}


def health_key(app: str) -> str:
    return f"berth:health:{app}"


def process_state(*, task_state: str, container_health: str | None = None) -> str:
    """Swarm's task state (and Docker's health check, when the image has one) in the contract's four words."""
    if task_state == "running":
        if container_health in ("unhealthy", "starting"):
            return container_health
        return "healthy"
    if task_state in STARTING_STATES:
        return "starting"
    return "crashed"


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


def _health_from_status(status: str) -> str | None:
    # `docker ps` status: "Up 5 seconds (healthy)", "Up 1 second (health: starting)", "Up 3 minutes (unhealthy)"
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(healthy)" in status:
        return "healthy"
    if "health: starting" in status:
        return "starting"
    return None


class ProcStat:
    """This node's CPU use between two reads of /proc/stat."""

    def __init__(self, path: Path = Path("/proc/stat")):
        self.path = path
        self.previous: tuple[int, int] | None = None

    def read(self) -> tuple[int, int]:
        values = [int(v) for v in self.path.read_text().splitlines()[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    def percent(self) -> float | None:
        total, idle = self.read()
        previous, self.previous = self.previous, (total, idle)
        if previous is None or total <= previous[0]:
            return None
        return round((1 - (idle - previous[1]) / (total - previous[0])) * 100, 1)


def meminfo(path: Path = Path("/proc/meminfo")) -> tuple[float, float]:
    """(used MB, total MB) of this node: total minus what the kernel says is available."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) if rest.split() else 0
    total = values.get("MemTotal", 0) / 1024
    return round(total - values.get("MemAvailable", 0) / 1024, 1), round(total, 1)


class Sampler:
    """Writes health snapshots per app and node snapshots, every `interval` seconds while running."""

    def __init__(
        self,
        *,
        client: docker.DockerClient | None = None,
        redis_conn: redis.Redis | None = None,
        interval: float = SAMPLE_INTERVAL,
    ):
        self.client = client or docker_client()
        self.api = self.client.api
        self.redis = redis_conn or redis_client()
        self.interval = interval
        self.scheduler = get_scheduler()
        self.proc_stat = ProcStat()
        self.restarts: dict[tuple[str, int | None], int] = {}
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stats")
        self.thread: threading.Thread | None = None

    def container_stats(self) -> dict[str, dict]:
        """CPU % and memory of every running app container on this node, sampled in parallel (each one-shot
        stats call takes about a second: Docker waits for a second reading to compute the CPU share)."""
        containers = self.api.containers(filters={"label": LABEL_APP, "status": "running"})

        def one(container: dict) -> tuple[str, dict | None]:
            try:
                stats = self.api.stats(container["Id"], stream=False)
            except (docker.errors.APIError, requests.RequestException, ValueError):
                # it stopped meanwhile: Docker answers 404, or an empty body that is not JSON
                return container["Id"], None
            return container["Id"], {
                "cpu_percent": cpu_percent(stats),
                "memory_mb": memory_mb(stats),
                "health": _health_from_status(container.get("Status", "")),
            }

        return {cid: value for cid, value in self.pool.map(one, containers) if value is not None}

    def apps(self) -> list[str]:
        services = self.api.services(filters={"label": LABEL_APP})
        return sorted({s["Spec"].get("Labels", {}).get(LABEL_APP, "") for s in services} - {""})

    def processes(self, tasks: list[TaskInfo], stats: dict[str, dict]) -> list[dict]:
        rows = []
        for task in tasks:
            sample = stats.get(task.container_id or "", {})
            rows.append(
                {
                    "id": task.id,
                    "process": task.process,
                    "instance": f"{task.process}.{task.slot}",
                    "release": task.release,
                    "state": process_state(task_state=task.state, container_health=sample.get("health")),
                    "node": task.node_id,
                    "cpu_percent": sample.get("cpu_percent"),
                    "memory_mb": sample.get("memory_mb"),
                    "restarts": task.restarts,
                }
            )
        return rows

    def note_crashes(self, app: str, tasks: list[TaskInfo]) -> None:
        for task in tasks:
            key = (task.service, task.slot)
            before = self.restarts.get(key)
            self.restarts[key] = task.restarts
            if before is not None and task.restarts > before:
                reason = f": {task.last_error}" if task.last_error else ""
                event_record(
                    app=app,
                    kind="crashed",
                    message=f"{task.process}.{task.slot} of v{task.release} crashed and was restarted{reason}",
                )

    def nodes(self) -> list[dict]:
        info = self.api.info()
        local = (info.get("Swarm") or {}).get("NodeID")
        running = Counter(
            t.get("NodeID")
            for t in self.api.tasks(filters={"desired-state": "running"})
            if (t.get("Status") or {}).get("State") == "running"
        )
        rows = []
        for node in self.api.nodes():
            description = node.get("Description") or {}
            resources = description.get("Resources") or {}
            row = {
                "id": node["ID"],
                "hostname": description.get("Hostname", ""),
                "state": (node.get("Status") or {}).get("State", ""),
                "availability": (node.get("Spec") or {}).get("Availability", ""),
                "address": (node.get("Status") or {}).get("Addr", ""),
                "cpu_percent": None,
                "memory_used_mb": None,
                "memory_total_mb": round(resources.get("MemoryBytes", 0) / MB, 1) or None,
                "disk_used_percent": None,
                "tasks": running.get(node["ID"], 0),
            }
            if node["ID"] == local:
                # Only this node's own /proc and disks are readable here; other nodes report what Swarm knows.
                row["cpu_percent"] = self.proc_stat.percent()
                row["memory_used_mb"], row["memory_total_mb"] = meminfo()
                root = info.get("DockerRootDir") or "/"
                usage = shutil.disk_usage(root if Path(root).exists() else "/")
                row["disk_used_percent"] = round(usage.used / usage.total * 100, 1)
            rows.append(row)
        return rows

    def sample_once(self) -> dict[str, list[dict]]:
        """Take one sample of every app and the nodes, write them, and return the apps' processes."""
        stats = self.container_stats()
        now = time.time()
        result = {}
        for app in self.apps():
            try:
                tasks = self.scheduler.tasks(app=app)
            except Exception:
                # one app's services changing under the sample (removed meanwhile) must not blank all the others
                logger.warning("health of %s not sampled", app, exc_info=True)
                continue
            self.note_crashes(app, tasks)
            result[app] = self.processes(tasks, stats)
            payload = json.dumps({"ts": now, "processes": result[app]})
            self.redis.xadd(health_key(app), {"data": payload}, maxlen=SERIES_MAX, approximate=True)
        nodes = self.nodes()
        self.redis.xadd(
            NODES_KEY, {"data": json.dumps({"ts": now, "nodes": nodes})}, maxlen=SERIES_MAX, approximate=True
        )
        return result

    def run(self) -> None:
        self.proc_stat.percent()  # the first reading only sets the baseline
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:
                logger.exception("metrics sample failed")
            self.stopping.wait(max(0.5, self.interval - (time.monotonic() - started)))

    def start(self) -> "Sampler":
        self.thread = threading.Thread(target=self.run, name="metrics", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)


def latest_snapshot(key: str, client: redis.Redis | None = None) -> dict | None:
    """The newest snapshot of a series (health of an app, or the nodes), or None."""
    client = client or redis_client()
    for _, fields in client.xrevrange(key, count=1):
        return json.loads(as_text(fields[b"data"]))
    return None
