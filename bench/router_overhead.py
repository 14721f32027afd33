"""Benchmark: what the router adds. wrk against a backend directly and through HAProxy (p50, p99, req/s), and the
time from an endpoint dying to HAProxy taking it out of rotation.

    .venv/bin/python bench/router_overhead.py [--duration 5] [--deaths 5]

Everything runs on 127.0.0.1: a HAProxy from Berth's own configuration (64 backends of 16 server slots) on a free
port in a temporary folder, the test backend of tests/support/backends.py (Python http.server, keep-alive), wrk with
one connection (latency: what one request costs) and with 16 (a busy router). Goals: at most 0.3 ms added at p50,
at most 3 s out of rotation. Prints tables and writes bench/results/router_overhead.json.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)

from berth.routing.haproxy import admin_command, haproxy_command, write_config  # noqa: E402
from berth.routing.haproxy_router import HaproxyRouter  # noqa: E402
from common import figure, percentile, print_table, save_figures  # noqa: E402

from tests.conftest import free_port, wait_for  # noqa: E402
from tests.support.backends import start_backend  # noqa: E402

HOST = "bench.localhost"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}  # wrk's latency units, to milliseconds


def wrk(port: int, *, connections: int, duration: int) -> dict:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Host: {HOST}",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 30, check=True,
    )  # fmt: skip
    out = result.stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * UNITS[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "errors": (int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
    }


def server_status(router: HaproxyRouter, backend: str, server: str) -> str:
    for line in admin_command(f"show stat {backend} 4 -1", socket_path=router.admin_socket).splitlines()[1:]:
        fields = line.split(",")
        if len(fields) > 17 and fields[1] == server:
            return fields[17]
    return "?"


def time_to_leave_rotation(router: HaproxyRouter, survivor, *, trials: int) -> list[float]:
    """Kill an endpoint at a random moment of the check cycle; seconds until HAProxy reports it DOWN."""
    times = []
    for trial in range(trials):
        victim = start_backend(f"victim-{trial}", port=free_port())
        try:
            router.apply(app="bench", hostnames=[HOST], endpoints=[survivor.endpoint, victim.endpoint])
            slots = json.loads(router.paths.slots.read_text())
            backend = slots["apps"]["bench"]["backend"]
            state = admin_command(f"show servers state {backend}", socket_path=router.admin_socket)
            server = next(line.split()[3] for line in state.splitlines() if f" {victim.port} " in line)
            time.sleep(1.0 + 0.37 * trial)  # checks run every second: land at a different phase each time
            killed = time.monotonic()
            victim.kill()
            wait_for(
                lambda b=backend, s=server: server_status(router, b, s).startswith("DOWN"),
                timeout=10,
                interval=0.01,
            )
            times.append(time.monotonic() - killed)
        finally:
            victim.stop()
    router.apply(app="bench", hostnames=[HOST], endpoints=[survivor.endpoint], drain_timeout=5)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--deaths", type=int, default=5, help="endpoints to kill for the rotation timing")
    parser.add_argument("--repeats", type=int, default=1, help="wrk runs per target and connection count")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="berth-bench-router-") as directory:
        port = free_port()
        paths = write_config(http_port=port, directory=Path(directory))
        haproxy = subprocess.Popen(
            haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        backend = None
        try:
            admin_socket = paths.directory / "admin.sock"
            wait_for(admin_socket.exists, timeout=10, message="HAProxy's admin socket")
            router = HaproxyRouter(directory=paths.directory, admin_socket=admin_socket)
            backend = start_backend("bench", port=free_port())
            router.apply(app="bench", hostnames=[HOST], endpoints=[backend.endpoint])

            runs = []
            for _ in range(max(1, min(args.repeats, 10))):
                for connections in (1, 16):
                    direct = wrk(backend.port, connections=connections, duration=args.duration)
                    routed = wrk(port, connections=connections, duration=args.duration)
                    runs.append({"connections": connections, "direct": direct, "haproxy": routed})
            rows = []
            for run in runs:
                for target in ("direct", "haproxy"):
                    r = run[target]
                    rows.append(
                        [
                            target,
                            run["connections"],
                            r["p50_ms"],
                            r["p99_ms"],
                            r["requests_per_s"],
                            r["errors"],
                        ]
                    )
                added = run["haproxy"]["p50_ms"] - run["direct"]["p50_ms"]
                rows.append(["added by HAProxy", run["connections"], added, "", "", ""])
            print_table(
                f"wrk -t1 -d{args.duration}s against the test backend, directly and through HAProxy (goal: ≤ 0.3 ms "
                "added at p50)",
                ["target", "connections", "p50 ms", "p99 ms", "req/s", "errors"],
                rows,
            )

            deaths = time_to_leave_rotation(router, backend, trials=args.deaths)
            print_table(
                f"endpoint killed (SIGKILL) → marked DOWN by HAProxy's L4 checks, {len(deaths)} trials (goal: ≤ 3 s)",
                ["min s", "median s", "max s"],
                [[min(deaths), percentile(deaths, 0.5), max(deaths)]],
            )
        finally:
            if backend:
                backend.stop()
            haproxy.terminate()
            haproxy.wait(timeout=10)

    figures = []
    for connections in (1, 16):
        mine = [run for run in runs if run["connections"] == connections]
        figures += [
            figure(f"p50 direct, wrk {connections} conn.", [r["direct"]["p50_ms"] for r in mine], "ms"),
            figure(
                f"p50 through HAProxy, wrk {connections} conn.", [r["haproxy"]["p50_ms"] for r in mine], "ms"
            ),
            figure(
                f"added by HAProxy at p50, {connections} conn.",
                [r["haproxy"]["p50_ms"] - r["direct"]["p50_ms"] for r in mine],
                "ms",
                goal="≤ 0.3 ms",
                limit=0.3,
            ),
            figure(
                f"req/s through HAProxy, {connections} conn.",
                [r["haproxy"]["requests_per_s"] for r in mine],
                "req/s",
            ),
        ]
    figures.append(figure("endpoint killed → marked DOWN (L4 checks)", deaths, "s", goal="≤ 3 s", limit=3))
    save_figures("router_overhead", figures)
    results = {
        "wrk": runs,
        "out_of_rotation_s": deaths,
        "added_p50_ms_1_connection": runs[0]["haproxy"]["p50_ms"] - runs[0]["direct"]["p50_ms"],
    }
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "router_overhead.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
