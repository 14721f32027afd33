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
from pathlib import Path

import redis

from berth.core.redis import redis_client
from berth.observe.services import as_text, event_record, health_key
from berth.runtime.scheduler import TaskInfo, get_scheduler
from berth.runtime.stats import ContainerUsage, EngineStats

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL = 5.0
SERIES_MAX = 720  # an hour of 5 s samples
NODES_KEY = "berth:nodes"

STARTING_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
CRASHED_STATES = {"failed", "rejected", "orphaned", "complete", "shutdown", "remove"}


def process_state(*, task_state: str, container_health: str | None = None) -> str:
    """Swarm's task state (and Docker's health check, when the image has one) in the contract's four words."""
    if task_state == "running":
        if container_health in ("unhealthy", "starting"):
            return container_health
        return "healthy"
    if task_state in STARTING_STATES:
        return "starting"
    return "crashed"


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
        engine: EngineStats | None = None,
        redis_conn: redis.Redis | None = None,
        interval: float = SAMPLE_INTERVAL,
    ):
        self.engine = engine or EngineStats()
        self.redis = redis_conn or redis_client()
        self.interval = interval
        self.scheduler = get_scheduler()
        self.proc_stat = ProcStat()
        self.restarts: dict[tuple[str, int | None], int] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def processes(self, tasks: list[TaskInfo], stats: dict[str, ContainerUsage]) -> list[dict]:
        rows = []
        for task in tasks:
            sample = stats.get(task.container_id or "")
            rows.append(
                {
                    "id": task.id,
                    "process": task.process,
                    "instance": f"{task.process}.{task.slot}",
                    "release": task.release,
                    "state": process_state(
                        task_state=task.state, container_health=sample.health if sample else None
                    ),
                    "node": task.node_id,
                    "cpu_percent": sample.cpu_percent if sample else None,
                    "memory_mb": sample.memory_mb if sample else None,
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
        swarm = self.engine.swarm()
        rows = []
        for node in swarm.nodes:
            row = {
                "id": node.id,
                "hostname": node.hostname,
                "state": node.state,
                "availability": node.availability,
                "address": node.address,
                "cpu_percent": None,
                "memory_used_mb": None,
                "memory_total_mb": node.memory_total_mb,
                "disk_used_percent": None,
                "tasks": node.tasks,
            }
            if node.id == swarm.local_id:
                # Only this node's own /proc and disks are readable here; other nodes report what Swarm knows.
                row["cpu_percent"] = self.proc_stat.percent()
                row["memory_used_mb"], row["memory_total_mb"] = meminfo()
                root = swarm.docker_root
                usage = shutil.disk_usage(root if Path(root).exists() else "/")
                row["disk_used_percent"] = round(usage.used / usage.total * 100, 1)
            rows.append(row)
        return rows

    def sample_once(self) -> dict[str, list[dict]]:
        """Take one sample of every app and the nodes, write them, and return the apps' processes."""
        stats = self.engine.containers()
        now = time.time()
        result = {}
        for app in self.engine.apps():
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
        self.engine.close()


def latest_snapshot(key: str, client: redis.Redis | None = None) -> dict | None:
    """The newest snapshot of a series (health of an app, or the nodes), or None."""
    client = client or redis_client()
    for _, fields in client.xrevrange(key, count=1):
        return json.loads(as_text(fields[b"data"]))
    return None
