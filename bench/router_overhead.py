"""Benchmark: what the router adds. wrk against a backend directly and through HAProxy over HTTP and HTTPS (p50,
p99, req/s), new connections per second without keep-alive (HTTP, and HTTPS: a TLS handshake each), and the time
from an endpoint dying to HAProxy taking it out of rotation.

    .venv/bin/python bench/router_overhead.py [--duration 5] [--deaths 5]

Everything runs on 127.0.0.1: a HAProxy from Berth's own configuration (64 backends of 16 server slots, an HTTPS
frontend) on free ports in a temporary folder, the test backend of tests/support/backends.py (Python http.server,
keep-alive), wrk with one connection (latency: what one request costs) and with 16 (a busy router). HTTPS uses an
ECDSA P-256 certificate from a local CA (tests/routing/tls_ca.py), put through the runtime API as Berth does, picked
by SNI ("localhost", which wrk sends). Goals: at most 0.3 ms added at p50 (HTTP), at most 3 s out of rotation.
Prints tables and writes bench/results/router_overhead.json.
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
from tests.routing.tls_ca import LocalCA  # noqa: E402
from tests.support.backends import start_backend  # noqa: E402

HOST = "bench.localhost"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}  # wrk's latency units, to milliseconds


def wrk(port: int, *, connections: int, duration: int, scheme: str = "http", keep_alive: bool = True) -> dict:
    # https://localhost: wrk sends the URL's host as SNI, and the bench certificate names it; Host picks the app
    url = f"https://localhost:{port}/" if scheme == "https" else f"http://127.0.0.1:{port}/"
    close = [] if keep_alive else ["-H", "Connection: close"]  # a new connection (and handshake) per request
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Host: {HOST}", *close, url],
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


def ssl_counters(router: HaproxyRouter) -> dict[str, int]:
    """HAProxy's TLS counters from `show info` (handshakes so far, the share of resumed sessions)."""
    wanted = ("CumSslConns", "SslFrontendSessionReuse_pct")
    counters = {}
    for line in admin_command("show info", socket_path=router.admin_socket).splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            counters[name] = int(value.strip())
    return counters


def full_handshakes(port: int, *, duration: int) -> dict:
    """Full TLS handshakes per second (no session resumed: `openssl s_time -new`, one client, no request)."""
    started = time.monotonic()
    result = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(duration)],
        capture_output=True, text=True, timeout=duration + 30, check=True,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    connections = int(re.search(r"^(\d+) connections in [\d.]+s;", result.stdout, re.MULTILINE).group(1))
    return {"connections": connections, "seconds": elapsed, "per_s": connections / elapsed}


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
        port, https_port = free_port(), free_port()
        paths = write_config(http_port=port, https_port=https_port, directory=Path(directory))
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
            router.certificate_put(name="bench", pem=LocalCA().issue("localhost", HOST)[0])

            runs, handshakes = [], []
            for _ in range(max(1, min(args.repeats, 10))):
                for connections in (1, 16):
                    direct = wrk(backend.port, connections=connections, duration=args.duration)
                    routed = wrk(port, connections=connections, duration=args.duration)
                    tls = wrk(https_port, connections=connections, duration=args.duration, scheme="https")
                    runs.append(
                        {"connections": connections, "direct": direct, "haproxy": routed, "https": tls}
                    )
                new_http = wrk(port, connections=16, duration=args.duration, keep_alive=False)
                reused_before = ssl_counters(router)
                new_https = wrk(
                    https_port, connections=16, duration=args.duration, scheme="https", keep_alive=False
                )
                reused = ssl_counters(router)
                full = full_handshakes(https_port, duration=args.duration)
                handshakes.append(
                    {
                        "http": new_http,
                        "https": new_https,
                        "tls_handshakes_total": reused["CumSslConns"] - reused_before["CumSslConns"],
                        "tls_reuse_pct": reused["SslFrontendSessionReuse_pct"],
                        "full_handshakes": full,
                    }
                )
            rows = []
            for run in runs:
                for target in ("direct", "haproxy", "https"):
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
                added_tls = run["https"]["p50_ms"] - run["haproxy"]["p50_ms"]
                rows.append(["added by HTTPS over HTTP", run["connections"], added_tls, "", "", ""])
            print_table(
                f"wrk -t1 -d{args.duration}s keep-alive against the test backend, directly, through HAProxy and "
                "through HAProxy over HTTPS (goal: ≤ 0.3 ms added at p50 over HTTP)",
                ["target", "connections", "p50 ms", "p99 ms", "req/s", "errors"],
                rows,
            )
            print_table(
                f"wrk -t1 -c16 -d{args.duration}s, Connection: close: a new connection per request through HAProxy "
                "(HTTPS: a TLS handshake each, wrk resumes sessions; full handshakes/s: openssl s_time -new, one client)",
                [
                    "run",
                    "HTTP conn/s",
                    "HTTPS conn/s",
                    "HTTPS p50 ms",
                    "TLS handshakes",
                    "resumed %",
                    "full handshakes/s",
                    "errors",
                ],
                [
                    [
                        n + 1,
                        h["http"]["requests_per_s"],
                        h["https"]["requests_per_s"],
                        h["https"]["p50_ms"],
                        h["tls_handshakes_total"],
                        h["tls_reuse_pct"],
                        h["full_handshakes"]["per_s"],
                        h["http"]["errors"] + h["https"]["errors"],
                    ]
                    for n, h in enumerate(handshakes)
                ],
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
            figure(
                f"p50 through HAProxy over HTTPS, wrk {connections} conn.",
                [r["https"]["p50_ms"] for r in mine],
                "ms",
            ),
            figure(
                f"added by HTTPS over HTTP at p50, {connections} conn.",
                [r["https"]["p50_ms"] - r["haproxy"]["p50_ms"] for r in mine],
                "ms",
            ),
            figure(
                f"req/s through HAProxy over HTTPS, {connections} conn.",
                [r["https"]["requests_per_s"] for r in mine],
                "req/s",
            ),
        ]
    figures += [
        figure(
            "new connections/s through HAProxy, HTTP, no keep-alive (16 conn.)",
            [h["http"]["requests_per_s"] for h in handshakes],
            "conn/s",
        ),
        figure(
            "new TLS handshakes/s through HAProxy, HTTPS, no keep-alive (16 conn.)",
            [h["https"]["requests_per_s"] for h in handshakes],
            "conn/s",
            note=f"wrk resumes TLS sessions: {', '.join(str(h['tls_reuse_pct']) for h in handshakes)} % resumed",
        ),
        figure(
            "full TLS handshakes/s through HAProxy (openssl s_time -new, 1 client)",
            [h["full_handshakes"]["per_s"] for h in handshakes],
            "conn/s",
            note="ECDSA P-256; the client shares the CPUs",
        ),
    ]
    figures.append(figure("endpoint killed → marked DOWN (L4 checks)", deaths, "s", goal="≤ 3 s", limit=3))
    save_figures("router_overhead", figures)
    results = {
        "wrk": runs,
        "new_connections": handshakes,
        "out_of_rotation_s": deaths,
        "added_p50_ms_1_connection": runs[0]["haproxy"]["p50_ms"] - runs[0]["direct"]["p50_ms"],
    }
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "router_overhead.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
