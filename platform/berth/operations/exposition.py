"""The platform's own figures in Prometheus' text format (`GET /metrics`, token-protected): builds and releases by
state, build durations, Celery queue depth, apps, nodes, and per app and process the newest 10 s window the shipper
wrote (CPU, memory, running processes; for web: requests/s, 5xx/s and p95 from the router). Read from what Berth
already keeps (the database, Redis, the swarm): a scrape starts nothing and changes nothing.
"""

import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db.models import Count, F, Sum

from berth.apps.models import App
from berth.builds.models import Build, BuildStatus
from berth.core.redis import redis_client
from berth.nodes.selectors import node_list
from berth.observe.history import decode, history_key, processes_key
from berth.releases.models import Release

# the Celery queues Berth's worker consumes (deploy/Procfile); each is a Redis list of that name
QUEUES = ("default", "builds", "deploys", "previews")
TOKEN_FILE = "metrics-token"
# per-app window fields -> (metric, help, factor to the metric's unit)
WINDOW_FIGURES = {
    "cpu": (
        "berth_process_cpu_percent",
        "CPU of the process type's containers, % of one core (10 s mean)",
        1,
    ),
    "mem": ("berth_process_memory_bytes", "memory of the process type's containers (10 s mean)", 1024 * 1024),
    "n": ("berth_process_running", "running containers of the process type", 1),
    "rps": ("berth_app_requests_per_second", "requests the router answered for the app (10 s window)", 1),
    "e5xx": ("berth_app_5xx_per_second", "5xx answers the router gave for the app (10 s window)", 1),
    "p95": (
        "berth_app_response_p95_seconds",
        "95th percentile of the app's response time (10 s window)",
        0.001,
    ),
}
ROUTER_FIELDS = ("rps", "e5xx", "p95")


def metrics_token() -> str:
    """BERTH_METRICS_TOKEN, else the one generated into BERTH_HOME/metrics-token on first use (mode 0600)."""
    if settings.BERTH_METRICS_TOKEN:
        return settings.BERTH_METRICS_TOKEN
    path = Path(settings.BERTH_HOME) / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", opener=lambda name, flags: os.open(name, flags, 0o600)) as handle:
                handle.write(token + "\n")
        except FileExistsError:  # another process made it meanwhile: theirs is the one
            return path.read_text().strip()
        return token


def token_matches(given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), metrics_token().encode())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.declared: set[str] = set()

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict, float]]) -> None:
        if name not in self.declared:
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            self.declared.add(name)
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {value:.15g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def exposition() -> str:
    out = Exposition()
    builds = dict(Build.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    out.metric(
        "berth_builds",
        "gauge",
        "builds by status",
        [({"status": status}, builds.get(status, 0)) for status in BuildStatus.values],
    )
    done = Build.objects.filter(
        status=BuildStatus.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
    ).aggregate(n=Count("id"), total=Sum(F("finished_at") - F("started_at")))
    out.metric(
        "berth_build_duration_seconds_sum",
        "counter",
        "total time of the succeeded builds",
        [({}, done["total"].total_seconds() if done["total"] else 0)],
    )
    out.metric("berth_build_duration_seconds_count", "counter", "succeeded builds", [({}, done["n"])])
    releases = Release.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    out.metric("berth_releases", "gauge", "releases by status", [({"status": s}, n) for s, n in releases])
    apps = list(App.objects.select_related("team").values_list("name", "team__name"))
    out.metric("berth_apps", "gauge", "apps", [({}, len(apps))])

    client = redis_client()
    out.metric(
        "berth_queue_length",
        "gauge",
        "tasks waiting in a Celery queue (a growing figure: no worker takes them)",
        [({"queue": queue}, client.llen(queue)) for queue in QUEUES],
    )

    pipe = client.pipeline()
    for app, _ in apps:
        pipe.smembers(processes_key(app))
    processes = pipe.execute()
    pipe = client.pipeline()
    keys = []
    for (app, team), members in zip(apps, processes, strict=True):
        for process in sorted(m.decode() if isinstance(m, bytes) else m for m in members):
            keys.append((app, team, process))
            pipe.xrevrange(history_key(app, process), count=1)
    samples: dict[str, list[tuple[dict, float]]] = {field: [] for field in WINDOW_FIGURES}
    for (app, team, process), entries in zip(keys, pipe.execute(), strict=True):
        if not entries:
            continue
        values = decode(entries[0][1])
        for field, value in values.items():
            if value is None or field not in WINDOW_FIGURES:
                continue
            labels = {"app": app, "team": team}
            if field not in ROUTER_FIELDS:
                labels["process"] = process
            samples[field].append((labels, value * WINDOW_FIGURES[field][2]))
    for field, (name, help_text, _) in WINDOW_FIGURES.items():
        out.metric(name, "gauge", help_text, samples[field])

    try:
        nodes = node_list()
    except Exception:  # noqa: BLE001 - the engine unreachable: the other figures still count
        nodes = None
    if nodes is not None:
        out.metric(
            "berth_node_up",
            "gauge",
            "1 when the Swarm node is ready (its heartbeat is heard) and active",
            [({"node": n.hostname, "role": n.role}, 1 if n.schedulable else 0) for n in nodes],
        )
    out.metric(
        "berth_engine_up", "gauge", "1 when the Docker engine answered", [({}, 0 if nodes is None else 1)]
    )
    return out.text()
