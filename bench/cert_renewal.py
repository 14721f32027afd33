"""Benchmark: a certificate renewed under keep-alive HTTPS load. The router's certificate is replaced N times through
HAProxy's runtime API (HaproxyRouter.certificate_put: set/commit ssl cert, no reload) while clients keep sending
requests over keep-alive HTTPS connections; counted: failed requests, keep-alive connections lost, the time from
the call to the new serial served to a new connection, and how long the call takes.

    .venv/bin/python bench/cert_renewal.py [--replacements 10] [--threads 2] [--interval 1.5]

Everything runs on 127.0.0.1: a HAProxy from Berth's own configuration (HTTP and HTTPS frontends) on free ports in a
temporary folder, the test backend of tests/support/backends.py, certificates (ECDSA P-256) from a local CA made
in memory (tests/routing/tls_ca.py), clients and a serial probe from tests/routing/tls_load.py (http.client and
ssl, no client retries). Goals: 0 failed requests, the new serial within 1 s. Prints tables and writes
bench/results/cert_renewal.json.
"""

import argparse
import atexit
import json
import os
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

from berth.routing.haproxy import haproxy_command, write_config  # noqa: E402
from berth.routing.haproxy_router import HaproxyRouter  # noqa: E402
from common import figure, percentile, print_table, save_figures  # noqa: E402

from tests.conftest import free_port, wait_for  # noqa: E402
from tests.routing.tls_ca import LocalCA, serial_of  # noqa: E402
from tests.routing.tls_load import HttpsKeepAliveLoad, SerialProbe  # noqa: E402
from tests.support.backends import start_backend  # noqa: E402

HOST = "renew.localhost"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replacements", type=int, default=10, help="certificates put under load (at most 100)"
    )
    parser.add_argument("--threads", type=int, default=2, help="keep-alive HTTPS clients (at most 16)")
    parser.add_argument("--interval", type=float, default=1.5, help="seconds of load between replacements")
    args = parser.parse_args()
    replacements = max(1, min(args.replacements, 100))
    interval = max(0.2, min(args.interval, 10.0))
    duration = 5 + replacements * (interval + 2)  # a bound on the load, never reached unless something hangs

    ca = LocalCA()
    with tempfile.TemporaryDirectory(prefix="berth-bench-renewal-") as directory:
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
            backend = start_backend("renewal", port=free_port())
            router.apply(app="renewal", hostnames=[HOST], endpoints=[backend.endpoint])
            router.certificate_put(name="c-1", pem=ca.issue(HOST)[0])

            rows = []
            with (
                HttpsKeepAliveLoad(
                    port=https_port,
                    hostname=HOST,
                    context=ca.context(),
                    threads=max(1, min(args.threads, 16)),
                    duration=duration,
                    max_requests=1_000_000,
                ) as load,
                SerialProbe(port=https_port, hostname=HOST, duration=duration, interval=0.005) as probe,
            ):
                load.wait_for_requests(200)
                for n in range(replacements):
                    pem, leaf = ca.issue(HOST)
                    failed_before = len(load.failures)
                    called = time.monotonic()
                    served = router.certificate_put(name="c-1", pem=pem)
                    returned = time.monotonic()
                    wait_for(
                        lambda s=serial_of(leaf), t=called: probe.first_seen(s, since=t),
                        timeout=10,
                        interval=0.005,
                        message="the new serial on a new connection",
                    )
                    time.sleep(interval)
                    rows.append(
                        {
                            "replacement": n + 1,
                            "put_ms": (returned - called) * 1000,
                            "new_serial_after_ms": (probe.first_seen(serial_of(leaf), since=called) - called)
                            * 1000,
                            "serial_checked": served.serial == serial_of(leaf),
                            "failed": len(load.failures) - failed_before,
                        }
                    )
            lost_connections = load.connections - load.threads
        finally:
            if backend:
                backend.stop()
            haproxy.terminate()
            haproxy.wait(timeout=10)

    print_table(
        f"a certificate replaced {replacements} times through the runtime API under {args.threads} keep-alive "
        f"HTTPS clients, {interval} s apart (goals: 0 failed, new serial ≤ 1 s)",
        ["#", "certificate_put ms", "call → new serial served ms", "serial read back", "failed requests"],
        [
            [r["replacement"], r["put_ms"], r["new_serial_after_ms"], str(r["serial_checked"]), r["failed"]]
            for r in rows
        ],
    )
    delays = [r["new_serial_after_ms"] for r in rows]
    puts = [r["put_ms"] for r in rows]
    print_table(
        "in all",
        [
            "requests",
            "failed",
            "keep-alive connections lost",
            "probe handshakes",
            "p50 → new serial ms",
            "max ms",
        ],
        [
            [
                load.total,
                len(load.failures),
                lost_connections,
                len(probe.seen),
                percentile(delays, 0.5),
                max(delays),
            ]
        ],
    )
    if load.failures:
        print("failures:", load.failures[:10])
    save_figures(
        "cert_renewal",
        [
            figure(
                "failed requests, certificate replaced under keep-alive HTTPS load",
                [len(load.failures)],
                "requests",
                goal="0",
                limit=0,
                note=f"{load.total} requests, {replacements} replacements",
            ),
            figure(
                "keep-alive HTTPS connections lost to a replacement",
                [lost_connections],
                "connections",
                goal="0",
                limit=0,
            ),
            figure(
                "certificate_put call → new serial on a new connection",
                delays,
                "ms",
                goal="≤ 1 s",
                limit=1000,
            ),
            figure("certificate_put (new/set/commit ssl cert, read back)", puts, "ms"),
        ],
    )
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "cert_renewal.json").write_text(
        json.dumps(
            {
                "replacements": rows,
                "requests": load.total,
                "failures": load.failures,
                "keep_alive_connections_lost": lost_connections,
            },
            indent=2,
        )
    )
    return 0 if not load.failures and all(r["serial_checked"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
