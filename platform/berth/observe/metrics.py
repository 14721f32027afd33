"""Health and metrics: what each app's containers use and how they are doing, and what each node has left.

The sampler runs every few seconds (in the ship_logs process). Per app it writes one snapshot of its processes
(task state mapped to starting/healthy/unhealthy/crashed, restarts, CPU % and memory from Docker's stats API) to
the capped stream `berth:health:<app>`; per sample one snapshot of the swarm's nodes to `berth:nodes`. Consumers
send the newest snapshot. The history the charts draw (24 h at 10 s, then 5-minute roll-ups) is written per
10 s window by `HistoryRecorder` into berth.observe.history, with the router's request figures
(berth.observe.traffic) when this process runs beside the router. A slot whose restart count
grows becomes a `crashed` platform event.
"""

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import redis
from django.conf import settings

from berth.core.redis import redis_client
from berth.observe.history import RESOLUTION, sample_write, window_of
from berth.observe.services import as_text, event_record, health_key
from berth.observe.traffic import ROUTED_PROCESS, Traffic
from berth.routing.haproxy import RouterPaths
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


class HistoryRecorder:
    """Turns the sampler's snapshots (every few seconds) and the router's request figures into one history entry
    per app and process per 10 s window (berth.observe.history): CPU and memory averaged over the window's
    samples, request figures over the window."""

    def __init__(self, *, redis_conn: redis.Redis, traffic: Traffic | None = None):
        self.redis = redis_conn
        self.traffic = traffic
        self.window: int | None = None
        self.samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {}

    def add(self, *, app: str, processes: list[dict], ts: float) -> None:
        """Note one snapshot of an app's processes (summed per process type) in the window of `ts`."""
        self.flush_due(ts)
        totals: dict[str, list[float]] = {}
        for row in processes:
            if row.get("cpu_percent") is None:
                continue  # not running: nothing measured
            total = totals.setdefault(row["process"], [0.0, 0.0, 0])
            total[0] += row["cpu_percent"]
            total[1] += row["memory_mb"] or 0.0
            total[2] += 1
        for process, (cpu, memory, count) in totals.items():
            self.samples.setdefault((app, process), []).append((cpu, memory, int(count)))

    def flush_due(self, now: float) -> None:
        """Write the open window once `now` is past it."""
        window = window_of(now)
        if self.window is None:
            self.window = window
        elif window > self.window:
            self.flush()
            self.window = window

    def flush(self) -> None:
        samples, self.samples = self.samples, {}
        requests = self.traffic.window() if self.traffic is not None else {}
        rows: dict[tuple[str, str], dict] = {}
        for (app, process), values in samples.items():
            rows[(app, process)] = {
                "cpu": sum(v[0] for v in values) / len(values),
                "mem": sum(v[1] for v in values) / len(values),
                "n": max(v[2] for v in values),
            }
        for app, figures in requests.items():
            if figures["rps"] is None and figures["p95"] is None:
                continue
            rows.setdefault((app, ROUTED_PROCESS), {}).update(figures)
        for (app, process), values in rows.items():
            try:
                sample_write(app=app, process=process, window=self.window, values=values, client=self.redis)
            except redis.RedisError:
                logger.warning("history of %s/%s not written", app, process, exc_info=True)


def router_traffic() -> Traffic | None:
    """The request figures' source on the node that runs the router (HAProxy), None elsewhere."""
    if settings.BERTH_ROUTER != "haproxy":
        return None
    paths = RouterPaths(Path(settings.BERTH_ROUTER_DIR))
    try:
        return Traffic(paths=paths, admin_socket=Path(settings.BERTH_ROUTER_ADMIN_SOCKET)).start()
    except OSError:
        logger.warning("no request figures: the request log socket %s", paths.request_log, exc_info=True)
        return None


class Sampler:
    """Writes health snapshots per app and node snapshots, every `interval` seconds while running."""

    def __init__(
        self,
        *,
        engine: EngineStats | None = None,
        redis_conn: redis.Redis | None = None,
        interval: float = SAMPLE_INTERVAL,
        traffic: Traffic | None = None,
    ):
        self.engine = engine or EngineStats()
        self.redis = redis_conn or redis_client()
        self.interval = interval
        self.traffic = traffic
        self.history = HistoryRecorder(redis_conn=self.redis, traffic=traffic)
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
            self.history.add(app=app, processes=result[app], ts=now)
        self.history.flush_due(time.time())
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
            # at least one sample per history window, whatever the interval asked for
            interval = min(self.interval, RESOLUTION / 2)
            self.stopping.wait(max(0.5, interval - (time.monotonic() - started)))

    def start(self) -> "Sampler":
        self.thread = threading.Thread(target=self.run, name="metrics", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.engine.close()
        if self.traffic is not None:
            self.traffic.stop()


def latest_snapshot(key: str, client: redis.Redis | None = None) -> dict | None:
    """The newest snapshot of a series (health of an app, or the nodes), or None."""
    client = client or redis_client()
    for _, fields in client.xrevrange(key, count=1):
        return json.loads(as_text(fields[b"data"]))
    return None
