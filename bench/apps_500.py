"""Benchmark: issue 17's 500 apps with one web process each on one node — what setting them up takes and uses, and
what the platform does at 1 app and at 500.

    .venv/bin/python bench/apps_500.py [--apps 500] [--quick] [--parallel 8] [--setup-until HH:MM]

Stands up a whole Berth of its own (bench/bench_platform.py: HAProxy, gunicorn+uvicorn, a Celery worker, the
watcher) on the PostgreSQL database berth_bench_apps500, Redis db 2 (BENCH_REDIS_URL), installation id
berth-bench-apps500 and a home under /var/tmp/apps500. Then:

- with 1 app (the first team's seed, a `git push` of bench/common.py's tiny app): "deploy of one more app", by
  `git push` (concurrent_pushes' Round: from the push until the router serves it) and by an image deploy of the
  seed's image (`POST /api/v1/apps/<app>/deploys`, until the router serves it); each extra app is destroyed after;
- sets up --apps apps in all (a seed per team, then image deploys of its image through the API, --parallel at a
  time; a team may deploy only its own apps' images), timing it and recording what it used: containers, the
  node's memory (MemTotal − MemAvailable), the containers' cgroup memory, the RSS of HAProxy and of web, worker
  and watcher, Redis (db 2's keys), the database's size, the CPU time spent;
- at N apps: the same "one more app" deploys, the watcher's CPU over a steady minute (/proc/<pid>/stat of the
  process tree the Platform started; dockerd's and HAProxy's beside it), one reconcile of all apps
  (`berth.discovery.services.reconcile_apps`, the function the watcher's full round calls, in a `manage.py shell`
  with the bench's settings, run while the watcher runs), HAProxy's memory, `GET /api/v1/apps` and the dashboard's
  `/apps/` (a page of 100) and `/apps/?q=` with 1 and 8 clients (bench/api_apps_list.py's load loop).

One team's overlay network is a /24 (Docker's default pool): it holds about 250 containers, so the apps are spread
over teams of at most TEAM_APPS. --setup-until stops adding apps at that UTC time (the measurements then run at the
number reached). Prints tables, writes bench/results/apps_500.json (+ .figures.json for bench/run_all.py).

Everything it made is removed at the end, also on Ctrl-C, SIGTERM or an error: the processes it started (by PID),
the apps' services, containers, images and team networks, the database, Redis db 2, the home. A run killed before
its clean-up is cleaned at the next start: its processes (recorded PIDs, checked against their start time) and
whatever is named with APP_PREFIX.
"""

import argparse
import calendar
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import django
import httpx
import psycopg
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform"), str(REPO / "bench")]

# deploy_platform (for its git work tree, and concurrent_pushes' timed push) sets an environment of its own when
# imported: this benchmark's is set after it
import deploy_platform  # noqa: E402
from api_apps_list import run_load  # noqa: E402
from common import (  # noqa: E402
    figure,
    percentile,
    print_table,
    process_tree,
    push_timings,
    save_figures,
    tree_memory_mb,
)
from concurrent_pushes import Round  # noqa: E402
from deploy_platform import Source  # noqa: E402

shutil.rmtree(deploy_platform.HOME)  # the folder deploy_platform made on import: nothing here uses it

ROOT = Path("/var/tmp/apps500")
WORK = ROOT / "run"
PIDS = ROOT / "pids.json"  # the processes a run started: a killed run's are stopped by the next
DB_NAME = "berth_bench_apps500"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
APP_PREFIX = "a500-"
TEAM_APPS = 200  # per team: a team's overlay network is a /24 (about 250 addresses)
DEPLOY_TIMEOUT_S = 300  # one image deploy, build to live
SETUP_BUDGET_S = 3 * 3600  # the whole setup stops adding apps past this, whatever --setup-until says
os.environ.pop("BERTH_ROUTER_ADMIN_SOCKET", None)  # deploy_platform's; the router's own folder holds it
os.environ.update(
    DJANGO_SETTINGS_MODULE="berth.config.settings",
    BERTH_SECRET_KEY=os.environ.get("BERTH_SECRET_KEY", "bench"),
    BERTH_HOME=str(ROOT / "home"),
    BERTH_INSTALLATION_ID="berth-bench-apps500",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:54329/{DB_NAME}",
    REDIS_URL=REDIS_URL,
    BERTH_ROUTER_DIR=str(ROOT / "router"),
    # no quota between the bench and its apps (0: no limit)
    BERTH_TEAM_MAX_APPS="0",
    BERTH_TEAM_MAX_REPLICAS="0",
)

from bench_platform import Platform, database, remove_apps  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- what the node and the processes use ------------------------------------------------------------------------


def node_used_mb() -> float:
    """MemTotal − MemAvailable: what the node's processes and kernel hold."""
    info = {
        line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants: those alive now, and those they have reaped (a Celery
    pool child that ended counts in its parent's cutime and cstime)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += sum(int(field) for field in fields[11:15])
    return total / CLOCK_TICKS


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def dockerd_pid() -> int | None:
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def containers_memory(client) -> dict:
    """The bench's app containers: how many run, and their cgroup memory (v1: usage and RSS)."""
    containers = [
        c
        for c in client.containers.list(filters={"label": "org.berth.app"})
        if c.labels.get("org.berth.app", "").startswith(APP_PREFIX)
    ]
    usage = rss = 0
    for container in containers:
        cgroup = Path("/sys/fs/cgroup/memory/docker") / container.id
        try:
            usage += int((cgroup / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
            rss += int(stat.get("total_rss", 0))
        except OSError:
            continue  # not cgroup v1 with the cgroupfs driver, or just stopped
    return {"containers": len(containers), "usage_mb": usage / 2**20, "rss_mb": rss / 2**20}


def redis_memory() -> dict:
    """Redis db 2 (this bench's): keys and their MEMORY USAGE summed; the instance's used_memory beside it (shared
    with whatever else uses this Redis)."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = used = 0
    for key in client.scan_iter(count=1000):
        keys += 1
        used += client.memory_usage(key) or 0
        if keys >= 200_000:
            break
    return {
        "keys": keys,
        "keys_mb": used / 2**20,
        "instance_used_mb": client.info("memory")["used_memory"] / 2**20,
    }


def database_mb() -> float:
    with psycopg.connect("postgresql://postgres@127.0.0.1:54329/postgres") as conn:
        return conn.execute("SELECT pg_database_size(%s)", [DB_NAME]).fetchone()[0] / 2**20


def usage(berth: Platform, client) -> dict:
    """What the node and the platform hold now."""
    return {
        "node_used_mb": node_used_mb(),
        **containers_memory(client),
        "processes_rss_mb": {
            name: tree_memory_mb(process.pid)["rss_mb"] for name, process in berth.processes.items()
        },
        "haproxy": tree_memory_mb(berth.processes["router"].pid),
        "dockerd_rss_mb": tree_memory_mb(dockerd_pid())["rss_mb"] if dockerd_pid() else None,
        "redis": redis_memory(),
        "database_mb": database_mb(),
        "load_1min": os.getloadavg()[0],
    }


# -- the run's processes, and a killed run's leftovers -----------------------------------------------------------


def record_pids(berth: Platform) -> None:
    PIDS.write_text(
        json.dumps({str(p.pid): start_time(p.pid) for p in berth.processes.values()}, indent=2) + "\n"
    )


def stop_leftover_processes() -> None:
    """The processes an earlier run of this benchmark started and did not stop (it was killed): each by its PID,
    only while that PID is still the process it started (same start time)."""
    try:
        recorded = json.loads(PIDS.read_text())
    except (OSError, ValueError):
        return
    for pid, started in recorded.items():
        if started is not None and start_time(int(pid)) == started:
            print(f"stopping process {pid} left by an earlier run", flush=True)
            os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
        started is not None and start_time(int(pid)) == started for pid, started in recorded.items()
    ):
        time.sleep(0.5)
    for pid, started in recorded.items():
        if started is not None and start_time(int(pid)) == started:
            os.kill(int(pid), signal.SIGKILL)


def remove_everything(client, teams: list[str]) -> None:
    """Every service, container, image and team network named for this benchmark (this run's or a killed one's)."""
    from berth.runtime.swarm import team_network_remove  # Berth's modules only after django.setup() in main()

    names = {
        service.attrs["Spec"]["Labels"].get("org.berth.app", "")
        for service in client.services.list(filters={"label": "org.berth.app"})
    }
    for image in client.images.list(filters={"reference": f"berth/{APP_PREFIX}*"}):
        names |= {tag.rsplit(":", 1)[0].removeprefix("berth/") for tag in image.tags}
    names = sorted(n for n in names if n.startswith(APP_PREFIX))
    remove_apps(names, prefix=APP_PREFIX, team=teams[0])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the networks go once the last containers have left them
        left = [
            c
            for c in client.containers.list(all=True, filters={"label": "org.berth.app"})
            if c.labels.get("org.berth.app", "").startswith(APP_PREFIX)
        ]
        if not left:
            break
        time.sleep(2)
    for team in teams:
        try:
            team_network_remove(team=team, client=client)
        except Exception as error:  # reported: the rest of the clean-up goes on
            print(f"removing the network of team {team} failed: {error!r}", file=sys.stderr)


def team_names(apps: int) -> list[str]:
    return [f"{APP_PREFIX}t{number}" for number in range(max(1, -(-apps // TEAM_APPS)))]


# -- deploys -------------------------------------------------------------------------------------------------


class Bench:
    """The platform, its tenant and the apps made so far."""

    def __init__(self, berth: Platform, token: str, teams: list[str], client):
        self.berth, self.token, self.teams, self.client = berth, token, teams, client
        self.api = httpx.Client(
            base_url=f"{berth.web_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.router = types.SimpleNamespace(http_port=berth.router_port)  # what Round needs of a platform
        self.through_router = httpx.Client(base_url=f"http://127.0.0.1:{berth.router_port}", timeout=5)
        self.seeds: dict[str, tuple[str, str]] = {}  # per team: its seed's image and what the seed answers
        self.stopping = (
            threading.Event()
        )  # Ctrl-C or the end of the setup: the deploys in flight stop waiting

    def app_create(self, name: str, team: str) -> None:
        answer = self.api.post("/apps", json={"name": name, "team": team})
        if answer.status_code != 201:
            raise RuntimeError(f"creating {name}: {answer.status_code} {answer.text[:300]}")

    def app_destroy(self, name: str) -> None:
        """Destroy the app through the API and wait until its services are gone (bounded)."""
        self.api.delete(f"/apps/{name}").raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.client.services.list(
            filters={"label": f"org.berth.app={name}"}
        ):
            time.sleep(0.25)

    def serving(self, name: str, expected: str) -> bool:
        try:
            answer = self.through_router.get("/", headers={"Host": f"{name}.localhost"})
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and answer.text.strip() == expected

    def push(self, name: str, team: str) -> dict:
        """A new app, its first `git push` of the tiny app: seconds until the router serves it."""
        self.app_create(name, team)
        source = Source(
            WORK / "src" / name, f"http://git:{self.token}@127.0.0.1:{self.berth.web_port}/git/{name}.git"
        )
        pushing = Round(self.router, {name: source}, "push")
        result = pushing.run()
        if not result["ok"]:
            raise RuntimeError(f"the push to {name} failed: {json.dumps(result['errors'])[-2000:]}")
        return {
            "push_to_live_s": result["push_to_live_s"][0],
            "git_push_s": result["git_push_s"][0],
            **push_timings(pushing.outputs.get(name, "")),
        }

    def seed(self, team: str) -> dict:
        """The team's first app, a `git push` of the tiny app: its image is what the team's other apps deploy (a
        team may deploy only its own apps' images)."""
        name = f"{APP_PREFIX}seed{self.teams.index(team)}"
        pushed = self.push(name, team)
        image = self.api.get(f"/apps/{name}/releases/1").json()["image"]
        answer = self.through_router.get("/", headers={"Host": f"{name}.localhost"}).text.strip()
        self.seeds[team] = (image, answer)
        return {"name": name, "image": image, **pushed}

    def image_deploy(self, name: str, team: str) -> dict:
        """An image deploy of the team's seed image to the app: POST until its build ends, and until the router
        serves it."""
        image, expected = self.seeds[team]
        started = time.monotonic()
        answer = self.api.post(f"/apps/{name}/deploys", json={"image": image})
        if answer.status_code != 202:
            raise RuntimeError(f"deploy of {name}: {answer.status_code} {answer.text[:300]}")
        build = answer.json()["id"]
        deadline = started + DEPLOY_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                status = self.api.get(f"/apps/{name}/builds/{build}").json()
            except httpx.TransportError:
                # a keep-alive connection the server closed as this GET went out (seen twice in 500 deploys):
                # the poll asks again, the deploy is not failed for it
                time.sleep(0.25)
                continue
            if status["status"] not in ("queued", "building"):
                break
            time.sleep(0.25)
        else:
            raise RuntimeError(f"deploy of {name}: no end in {DEPLOY_TIMEOUT_S} s, or the bench stopped")
        built = time.monotonic()
        if status["status"] != "succeeded":
            raise RuntimeError(f"deploy of {name}: {status['status']}: {status.get('status_reason')}")
        while not self.serving(name, expected):
            if time.monotonic() > deadline or self.stopping.is_set():
                raise RuntimeError(f"{name} never served through the router")
            time.sleep(0.05)
        return {"build_end_s": built - started, "to_live_s": time.monotonic() - started}

    def one_more(self, label: str, runs: int) -> dict:
        """The issue's "deploy of one more app", `runs` times each way; each extra app is destroyed after it, so
        the number of apps stays."""
        pushes, images = [], []
        for run in range(runs):
            name = f"{APP_PREFIX}{label}-p{run}"
            pushes.append(self.push(name, self.teams[0]))
            self.app_destroy(name)
            name = f"{APP_PREFIX}{label}-i{run}"
            self.app_create(name, self.teams[0])
            images.append(self.image_deploy(name, self.teams[0]))
            self.app_destroy(name)
            print(
                f"  one more app ({label}) run {run + 1}: git push → live {pushes[-1]['push_to_live_s']:.2f} s "
                f"(builder {pushes[-1]['builder_s']} s, roll-out ready {pushes[-1]['rollout_ready_s']} s), "
                f"image deploy → live {images[-1]['to_live_s']:.2f} s",
                flush=True,
            )
        return {"push": pushes, "image": images}

    def setup(self, apps: int, *, parallel: int, until: float) -> dict:
        """The other teams' seeds, then apps a500-0003… image-deployed, `parallel` at a time, until `apps` are live
        with the seeds, or `until`."""
        started = time.monotonic()
        seeds = [self.seed(team) for team in self.teams if team not in self.seeds]
        names = {number: f"{APP_PREFIX}{number:04d}" for number in range(len(self.teams), apps)}
        done: list[dict] = []
        failed: dict[str, str] = {}

        def one(number: int, name: str) -> dict:
            if self.stopping.is_set() or time.time() > until:
                return {"name": name, "skipped": True}
            team = self.teams[number // TEAM_APPS]
            self.app_create(name, team)
            return {"name": name, **self.image_deploy(name, team)}

        samples = []
        sampling = threading.Event()

        def sample() -> None:  # the node's memory and load while the apps come up, every 10 s (bounded)
            while not sampling.wait(10) and len(samples) < 2000:
                samples.append(
                    {
                        "t": time.monotonic() - started,
                        "node_used_mb": node_used_mb(),
                        "load": os.getloadavg()[0],
                    }
                )

        threading.Thread(target=sample, daemon=True).start()
        pool = ThreadPoolExecutor(max_workers=parallel)
        try:
            futures = {pool.submit(one, number, name): name for number, name in names.items()}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # one app's failure is counted, the others go on
                    failed[name] = repr(error)[:500]
                    print(f"  {name} failed: {failed[name]}", file=sys.stderr, flush=True)
                    continue
                if result.get("skipped"):
                    continue
                done.append({**result, "at_s": time.monotonic() - started})
                if len(done) % 25 == 0:
                    elapsed = time.monotonic() - started
                    print(
                        f"  {len(done)} apps live after {elapsed:.0f} s ({len(done) / elapsed:.2f} apps/s; last "
                        f"deploy {result['to_live_s']:.1f} s; node {node_used_mb():,.0f} MB used; "
                        f"load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
        finally:
            self.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
            sampling.set()
        self.stopping.clear()
        wall = time.monotonic() - started
        return {
            "wall_s": wall,
            # the platform's count, not the bench's: a deploy whose poll failed may be live
            "live": live_apps(),
            "seeds": seeds,
            "failed": failed,
            "deploys": done,
            "samples": samples,
        }


def live_apps() -> int:
    """Apps with a live release, counted as the watcher's full round selects them."""
    # imported here: django.setup() runs in main(), after this benchmark's settings
    from berth.apps.models import App
    from berth.releases.models import ReleaseStatus

    return App.objects.filter(releases__status=ReleaseStatus.LIVE).distinct().count()


# -- measurements at a number of apps ----------------------------------------------------------------------


def steady_cpu(berth: Platform, seconds: float) -> dict:
    """CPU of the watcher (and HAProxy, dockerd) over `seconds` with nothing else happening: % of one core."""
    pids = {"watcher": berth.processes["watcher"].pid, "haproxy": berth.processes["router"].pid}
    if dockerd_pid():
        pids["dockerd"] = dockerd_pid()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: 100 * (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


RECONCILE = """
import json, time
from berth.apps.models import App
from berth.discovery.services import reconcile_apps
from berth.releases.models import ReleaseStatus
live = App.objects.filter(releases__status=ReleaseStatus.LIVE).distinct().count()
times = []
for _ in range({runs}):
    started = time.monotonic()
    reconcile_apps()
    times.append(time.monotonic() - started)
print(json.dumps({{"apps": live, "seconds": times}}))
"""


def reconcile_times(berth: Platform, runs: int) -> dict:
    """`reconcile_apps()` of all apps, as the watcher's full round calls it, `runs` times in a fresh process with
    the platform's settings (the watcher's own rounds go on beside it)."""
    env = {
        **os.environ,
        "BERTH_HTTP_PORT": str(berth.router_port),
        "BERTH_WEB_PORT": str(berth.web_port),
        "PYTHONPATH": str(REPO / "platform"),
        "BERTH_LOG_LEVEL": "WARNING",
    }
    shell = [str(REPO / ".venv/bin/python"), "manage.py", "shell", "-c", RECONCILE.format(runs=runs)]
    done = subprocess.run(shell, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def latencies(bench: Bench, session: dict, requests: int) -> tuple[list[dict], dict]:
    """p50/p95 of the API's apps list and the dashboard's apps page (and its search), 1 and 8 clients; and how many
    apps each answer holds (the API's list without ?limit= holds all of the user's apps)."""
    base = bench.berth.web_url
    api_auth = {"headers": {"Authorization": f"Bearer {bench.token}"}}
    pages = [
        ("GET /api/v1/apps", f"{base}/api/v1/apps", api_auth),
        ("GET /api/v1/apps?limit=100", f"{base}/api/v1/apps?limit=100", api_auth),
        ("GET /apps/ (dashboard)", f"{base}/apps/", session),
        (f"GET /apps/?q={APP_PREFIX}00 (dashboard)", f"{base}/apps/?q={APP_PREFIX}00", session),
    ]
    rows = []
    for page, url, auth in pages:
        run_load(url, auth, 20, 1)  # warm up every worker's connection and caches
        for clients in (1, 8):
            took, wall = run_load(url, auth, requests, clients)
            rows.append(
                {
                    "page": page,
                    "clients": clients,
                    "requests": len(took),
                    "p50_ms": percentile(took, 0.5),
                    "p95_ms": percentile(took, 0.95),
                    "req_per_s": len(took) / wall,
                }
            )
    counts = {
        "GET /api/v1/apps": len(bench.api.get("/apps").json()),
        "GET /api/v1/apps?limit=100": len(bench.api.get("/apps?limit=100").json()),
    }
    for page, url, auth in pages[2:]:
        counts[page] = httpx.get(url, timeout=30, **auth).text.count("<tr data-app=")
    return rows, counts


def measure(bench: Bench, session: dict, *, label: str, runs: int, steady_s: float, requests: int) -> dict:
    print(f"measuring at {label}", flush=True)
    more = bench.one_more(label, runs)
    time.sleep(5)  # the destroyed apps' removal settles
    cpu = steady_cpu(bench.berth, steady_s)
    print(f"  steady {steady_s:.0f} s: " + ", ".join(f"{k} {v:.1f} %" for k, v in cpu.items()), flush=True)
    reconcile = reconcile_times(bench.berth, runs=max(3, runs))
    print(
        f"  reconcile of {reconcile['apps']} apps: " + ", ".join(f"{s:.2f} s" for s in reconcile["seconds"])
    )
    rows, counts = latencies(bench, session, requests)
    for row in rows:
        print(
            f"  {row['page']}, {row['clients']} client(s): p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms",
            flush=True,
        )
    return {
        "one_more": more,
        "steady_cpu_percent": cpu,
        "steady_s": steady_s,
        "reconcile": reconcile,
        "latency": rows,
        "counts": counts,
        "usage": usage(bench.berth, bench.client),
        # the watcher's own word on slow rounds: a line per app that took over 2 s
        "watcher_slow_lines": (bench.berth.logs / "watcher.log").read_text(errors="replace").count(" took "),
    }


# -- the report ------------------------------------------------------------------------------------------------


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(result: dict) -> list[dict]:
    """Print the tables; return the figures for bench/run_all.py."""
    n, setup = result["apps_live"], result["setup"]
    levels = [
        (key, level)
        for key, level in (("1", result["levels"].get("1")), (str(n), result["levels"].get("N")))
        if level
    ]
    one = result["levels"].get("1")

    def push_median(level: dict) -> float:
        return median(r["push_to_live_s"] for r in level["one_more"]["push"])

    rows = [
        [
            key,
            push_median(level),
            median(r["to_live_s"] for r in level["one_more"]["image"]),
            level["steady_cpu_percent"]["watcher"],
            level["steady_cpu_percent"].get("dockerd", 0.0),
            median(level["reconcile"]["seconds"]),
            level["usage"]["haproxy"]["rss_mb"],
            level["usage"]["node_used_mb"],
            level["usage"]["containers"],
        ]
        for key, level in levels
    ]
    print_table(
        f"{n} apps on one node (1 web process each): at 1 app and at {n}; medians",
        ["apps", "one more app: git push→live s", "image deploy→live s", "watcher CPU %", "dockerd CPU %",
         "reconcile all s", "HAProxy RSS MB", "node used MB", "app containers"],
        rows,
    )  # fmt: skip
    print_table(
        "Apps list latency (the API has no pages: its answer holds every app of the user)",
        ["apps", "page", "apps in answer", "clients", "requests", "p50 ms", "p95 ms"],
        [
            [key, row["page"], level["counts"][row["page"]],
             row["clients"], row["requests"], row["p50_ms"], row["p95_ms"]]
            for key, level in levels
            for row in level["latency"]
        ],
    )  # fmt: skip
    start, end = result["usage_before_setup"], result["usage_after_setup"]
    deploys = [d["to_live_s"] for d in setup["deploys"]] or [0.0]

    def change(value) -> str:
        return f"{value(start):,.1f} → {value(end):,.1f}"

    processes = ("web", "worker", "watcher")
    print_table(
        f"Setting up {n} apps ({result['parallel']} image deploys at a time)",
        ["", "value"],
        [
            ["apps live / asked", f"{n} / {result['apps_asked']}"],
            ["failed deploys", len(setup["failed"])],
            ["setup wall time s", setup["wall_s"]],
            ["image deploy → live, p50 / p95 s", f"{percentile(deploys, 0.5):.1f} / {percentile(deploys, 0.95):.1f}"],
            ["node used MB, before → after", change(lambda u: u["node_used_mb"])],
            ["app containers", end["containers"]],
            ["containers' cgroup memory MB (usage / RSS)", f"{end['usage_mb']:,.0f} / {end['rss_mb']:,.0f}"],
            ["HAProxy RSS MB, before → after", change(lambda u: u["haproxy"]["rss_mb"])],
            ["HAProxy PSS MB, before → after", change(lambda u: u["haproxy"]["pss_mb"])],
            ["dockerd RSS MB, before → after", change(lambda u: u["dockerd_rss_mb"] or 0)],
            ["web / worker / watcher RSS MB, after", " / ".join(f"{end['processes_rss_mb'][p]:,.0f}" for p in processes)],
            ["Redis db 2: keys, MB of them, after", f"{end['redis']['keys']:,}, {end['redis']['keys_mb']:,.1f}"],
            ["database MB, before → after", change(lambda u: u["database_mb"])],
            [f"CPU s during setup: {' / '.join(result['setup_cpu_s'])}",
             " / ".join(f"{v:,.0f}" for v in result["setup_cpu_s"].values())],
            ["peak 1-min load average", max((s["load"] for s in setup["samples"]), default=os.getloadavg()[0])],
        ],
    )  # fmt: skip

    figures = [
        figure(f"{n} apps on one node: setup (image deploys, {result['parallel']} at a time)", [setup["wall_s"]], "s",
               note=f"{n} of {result['apps_asked']} live, {len(setup['failed'])} failed"),
        figure("  node memory used after the setup", [end["node_used_mb"]], "MB",
               note=f"{start['node_used_mb']:,.0f} MB before"),
    ]  # fmt: skip
    for key, level in levels:
        ratio = push_median(level) / push_median(one) if one else None
        more = figure(
            f"  one more app at {key}: git push → live",
            [r["push_to_live_s"] for r in level["one_more"]["push"]],
            "s",
        )
        if key != "1" and ratio is not None:
            more.update(goal="≤ 1.2 × at 1 app", met=ratio <= 1.2, note=f"{ratio:.2f} × at 1 app")
        figures += [
            more,
            figure(f"  one more app at {key}: image deploy → live", [r["to_live_s"] for r in level["one_more"]["image"]], "s"),
            figure(f"  watcher CPU at {key}, steady {level['steady_s']:.0f} s", [level["steady_cpu_percent"]["watcher"]], "%",
                   goal="≤ 5 %", limit=5),
            figure(f"  reconcile of all apps at {key}", level["reconcile"]["seconds"], "s", goal="≤ 1 s", limit=1),
            figure(f"  HAProxy RSS at {key}", [level["usage"]["haproxy"]["rss_mb"]], "MB"),
        ]  # fmt: skip
        for row in level["latency"]:
            limit = 50 if row["clients"] == 8 and key != "1" else None
            figures.append(
                figure(f"  {row['page']} at {key}, {row['clients']} client(s), p95", [row["p95_ms"]], "ms",
                       goal="≤ 50 ms" if limit else "", limit=limit)
            )  # fmt: skip
        if ratio is not None and key != "1":
            print(f"one more app at {key} / at 1 (git push → live medians): {ratio:.2f} (goal ≤ 1.2)")
    return figures


# -- main ---------------------------------------------------------------------------------------------------------


def until_time(text: str | None) -> float:
    """--setup-until HH:MM (UTC, today) as a time.time(), else the budget from now."""
    if not text:
        return time.time() + SETUP_BUDGET_S
    hours, minutes = (int(part) for part in text.split(":"))
    now = time.gmtime()
    return calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hours, minutes, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument(
        "--quick", action="store_true", help="1 run of each deploy, a 20 s steady window, fewer requests"
    )
    parser.add_argument("--parallel", type=int, default=8, help="image deploys at a time during the setup")
    parser.add_argument("--runs", type=int, default=3, help="'one more app' deploys of each kind per level")
    parser.add_argument(
        "--setup-until", default=None, help="HH:MM UTC: stop adding apps then, measure at the number reached"
    )
    args = parser.parse_args()
    apps = max(1, min(args.apps, 2000))
    runs = 1 if args.quick else max(1, min(args.runs, 10))
    steady_s = 20.0 if args.quick else 60.0
    requests = 40 if args.quick else 200
    parallel = max(1, min(args.parallel, 16))
    until = min(until_time(args.setup_until), time.time() + SETUP_BUDGET_S)
    teams = team_names(apps)

    def terminated(signum, frame):  # SIGTERM (run_all's timeout, kill): clean up as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop_leftover_processes()
    django.setup()
    # Berth's and Django's own modules from here on: they read the settings this benchmark's environment names
    from berth.runtime.client import docker_client

    client = docker_client(timeout=300)
    started = time.monotonic()
    remove_everything(client, team_names(2000))  # an earlier killed run's, whatever its --apps
    shutil.rmtree(ROOT, ignore_errors=True)
    (ROOT / "home").mkdir(parents=True)
    redis.Redis.from_url(REDIS_URL).flushdb()
    database(DB_NAME, "create")
    berth = Platform(WORK)
    result: dict = {"apps_asked": apps, "parallel": parallel, "levels": {}}
    try:
        berth.start()
        record_pids(berth)
        from berth.accounts.services import team_create, token_create
        from django.contrib.auth import get_user_model
        from django.test import Client

        user = get_user_model().objects.create_user(
            username="bench", email="bench@example.test", password="x-bench-1"
        )
        for team in teams:
            team_create(name=team, actor=user)
        _, token = token_create(user=user, name="bench")
        browser = Client()
        browser.force_login(user)  # a dashboard session, as signing in makes one
        session = {"cookies": {"sessionid": browser.cookies["sessionid"].value}}
        bench = Bench(berth, token, teams, client)
        print(
            f"platform up in {time.monotonic() - started:.0f} s (web {berth.web_url}, router :{berth.router_port})"
        )

        result["seed_push"] = bench.seed(teams[0])
        print(
            f"seed app live in {result['seed_push']['push_to_live_s']:.1f} s; its image {result['seed_push']['image']}"
        )

        result["levels"]["1"] = measure(
            bench, session, label="at1", runs=runs, steady_s=steady_s, requests=requests
        )
        result["usage_before_setup"] = usage(berth, client)
        procs = {
            **{n: berth.processes[n].pid for n in ("web", "worker", "watcher", "router")},
            "dockerd": dockerd_pid(),
        }
        cpu_before = {n: cpu_seconds(pid) for n, pid in procs.items() if pid}
        print(
            f"setting up {apps} apps, {parallel} at a time, until {time.strftime('%H:%M', time.gmtime(until))} UTC at the latest",
            flush=True,
        )
        result["setup"] = bench.setup(apps, parallel=parallel, until=until)
        result["setup_cpu_s"] = {n: cpu_seconds(pid) - cpu_before[n] for n, pid in procs.items() if pid}
        result["apps_live"] = result["setup"]["live"]
        result["usage_after_setup"] = usage(berth, client)
        print(f"{result['apps_live']} apps live after {result['setup']['wall_s']:.0f} s", flush=True)
        time.sleep(15)  # the last deploys' old tasks and the watcher's catch-up settle
        result["levels"]["N"] = measure(
            bench, session, label="atn", runs=runs, steady_s=steady_s, requests=requests
        )
    finally:
        cleanup_started = time.monotonic()
        berth.stop()
        try:
            remove_everything(client, teams)
        except Exception as error:  # reported; the database and Redis are still cleaned below
            print(f"removing the bench apps failed: {error!r}", file=sys.stderr)
        keep = berth.logs if "N" not in result["levels"] else None
        if keep is not None and keep.exists():
            kept = REPO / "bench" / "results" / "apps_500-logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(keep, kept)
            print(f"the platform's logs: {kept}", file=sys.stderr)
        from django.db import connections

        connections.close_all()
        database(DB_NAME, "drop")
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(ROOT, ignore_errors=True)
        result["cleanup_s"] = time.monotonic() - cleanup_started
        print(f"cleaned up in {result['cleanup_s']:.0f} s", flush=True)

    figures = report(result)
    save_figures("apps_500", figures)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "apps_500.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if not result["setup"]["failed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: cleaned up by then
        sys.exit("interrupted")
