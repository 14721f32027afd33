"""Benchmark: what growing past the router's pre-allocated slots costs clients under keep-alive load.

    .venv/bin/python bench/router_growth.py [--runs 3] [--threads 4]

A real HAProxy from Berth's own configuration on a free 127.0.0.1 port, in a temporary folder, with a small pool
(2 backend slots of 2 server slots, so one run grows several times; the default pool is 64 × 16 and grows the same
way), and the test backends of tests/support/backends.py. Keep-alive GETs (plain http.client, no client retries:
every failure counts) go to one app the whole time from busy connections (one request after another) and paced ones
(a pause of 50 ms between requests, like a browser's: idle most of the time, which is what a reload's old worker
closed under them), through two phases:

- servers: the app grows from 1 to 8 servers, one apply at a time (6 past its slots);
- apps: 8 more apps are added, one at a time (past the 2 backend slots three times: 2 → 4 → 8 → 16).

Each phase reports requests, failed, and p95 latency. Goal: 0 failed. The script imports Berth from the tree it sits
in, so a copy in a worktree of an older commit measures that commit (how the "before" figures were taken).
Prints a table and writes bench/results/router_growth.json.
"""

import argparse
import atexit
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)

import django  # noqa: E402

django.setup()

from berth.routing.haproxy import admin_command, haproxy_command, write_config  # noqa: E402
from berth.routing.haproxy_router import HaproxyRouter  # noqa: E402
from common import figure, percentile, print_table, save_figures  # noqa: E402

from tests.conftest import free_port, wait_for  # noqa: E402
from tests.support.backends import start_backend  # noqa: E402

SERVERS = 8  # the app's servers at the end of the servers phase
APPS = 9  # apps at the end of the apps phase
MAX_REQUESTS = 200_000  # per phase, a bound beside the time


class TimedLoad:
    """Threads sending keep-alive GETs to one Host, each answer's latency recorded; bounded in time and count.
    Threads `paced` of them wait `pause_s` after each answer, so their connections sit idle most of the time."""

    def __init__(
        self, *, port: int, host: str, threads: int, paced: int = 0, pause_s: float = 0.05, max_seconds: float
    ):
        self.port, self.host, self.max_seconds, self.pause_s = port, host, max_seconds, pause_s
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(0.0,), daemon=True) for _ in range(threads)]
        self._threads += [
            threading.Thread(target=self._run, args=(pause_s,), daemon=True) for _ in range(paced)
        ]

    def __enter__(self) -> "TimedLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.max_seconds + 15)

    @property
    def total(self) -> int:
        return len(self.latencies_ms) + len(self.failures)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline, start = time.monotonic() + timeout, self.total
        while self.total - start < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self, pause_s: float) -> None:
        deadline = time.monotonic() + self.max_seconds
        connection = None
        while not self._stop.is_set() and time.monotonic() < deadline and self.total < MAX_REQUESTS:
            if pause_s:
                self._stop.wait(pause_s)
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", "/", headers={"Host": self.host})
                response = connection.getresponse()
                response.read()
                elapsed_ms = (time.perf_counter() - started) * 1000
                with self._lock:
                    if response.status == 200:
                        self.latencies_ms.append(elapsed_ms)
                    else:
                        self.failures.append(f"HTTP {response.status}")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def summary(self) -> dict:
        return {
            "requests": self.total,
            "failed": len(self.failures),
            "failures": sorted(set(self.failures))[:5],
            "p95_ms": percentile(self.latencies_ms, 0.95) if self.latencies_ms else None,
        }


def worker_pid(router: HaproxyRouter) -> int:
    info = admin_command("show info", socket_path=router.admin_socket)
    return int(next(line for line in info.splitlines() if line.startswith("Pid:")).split(":")[1])


def one_run(*, threads: int, paced: int) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="berth-bench-router-growth-"))
    port = free_port()
    paths = write_config(http_port=port, directory=directory / "router", backends=2, servers=2)
    haproxy = subprocess.Popen(haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    router = HaproxyRouter(directory=paths.directory, admin_socket=paths.directory / "admin.sock")
    started: list = []
    try:
        wait_for(lambda: router.admin_socket.exists(), timeout=10, message="the admin socket")

        def backend(ident: str):
            started.append(start_backend(ident, port=free_port()))
            return started[-1]

        web = [backend("web0")]
        router.apply(app="app0", hostnames=["app0.localhost"], endpoints=[web[0].endpoint])
        result = {}

        reloads = 0
        with TimedLoad(
            port=port, host="app0.localhost", threads=threads, paced=paced, max_seconds=60
        ) as load:
            load.wait_for_requests(300)
            for n in range(1, SERVERS):
                web.append(backend(f"web{n}"))
                before = worker_pid(router)
                router.apply(app="app0", hostnames=["app0.localhost"], endpoints=[w.endpoint for w in web])
                reloads += worker_pid(router) != before
                load.wait_for_requests(200)
            load.wait_for_requests(300)
        result["servers"] = {**load.summary(), "reloads": reloads}

        reloads = 0
        with TimedLoad(
            port=port, host="app0.localhost", threads=threads, paced=paced, max_seconds=60
        ) as load:
            load.wait_for_requests(300)
            for n in range(1, APPS):
                before = worker_pid(router)
                router.apply(
                    app=f"app{n}", hostnames=[f"app{n}.localhost"], endpoints=[backend(f"app{n}").endpoint]
                )
                reloads += worker_pid(router) != before
                load.wait_for_requests(200)
            load.wait_for_requests(300)
        result["apps"] = {**load.summary(), "reloads": reloads}
        return result
    finally:
        for process in started:
            process.stop()
        haproxy.terminate()  # the master; its workers leave with it
        try:
            haproxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            haproxy.kill()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="busy keep-alive client connections")
    parser.add_argument(
        "--paced", type=int, default=16, help="keep-alive connections pausing 50 ms between requests"
    )
    args = parser.parse_args(argv)

    runs = []
    for number in range(1, args.runs + 1):
        runs.append(one_run(threads=args.threads, paced=args.paced))
        print(f"run {number}: {json.dumps(runs[-1])}", flush=True)

    labels = {
        "servers": f"1 → {SERVERS} servers in 2 slots",
        "apps": f"1 → {APPS} apps in 2 backend slots",
    }
    rows = []
    figures = []
    for phase, label in labels.items():
        mine = [run[phase] for run in runs]
        for run in mine:
            rows.append([label, run["requests"], run["failed"], round(run["p95_ms"] or 0, 2), run["reloads"]])
        figures += [
            figure(
                f"router growth, {label}: failed", [r["failed"] for r in mine], "requests", goal="0", limit=0
            ),
            figure(f"router growth, {label}: p95", [r["p95_ms"] for r in mine], "ms"),
            figure(f"router growth, {label}: requests", [r["requests"] for r in mine], "requests"),
        ]
    print_table(
        f"Growing past the router's slots under keep-alive load ({args.threads} busy and {args.paced} paced"
        f" connections, {args.runs} runs)",
        ["phase", "requests", "failed", "p95 ms", "reloads"],
        rows,
    )
    save_figures("router_growth", figures)
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "router_growth.json").write_text(json.dumps({"runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
