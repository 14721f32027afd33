"""Benchmark: app log line printed → received on the WebSocket, through the real pipeline.

    .venv/bin/python bench/log_latency.py [--seconds 30] [--clients 50] [--rate 100]

Starts, on a throwaway BERTH_HOME with SQLite and Redis database 15: the web process (gunicorn + uvicorn worker,
2 workers as in deploy/Procfile) on a free loopback port, and the log shipper (`manage.py ship_logs`) as a process
of its own, following only this benchmark's containers. Then runs a Swarm service (stack image) that prints
`<n> <unix time>` `--rate` times a second, and:

1. one WebSocket client for `--seconds`/2: latency from the time in the line to its arrival (p50/p95/max);
2. `--clients` WebSocket clients on the same app for `--seconds`: every line must reach every client exactly once,
   with no `dropped` or `gap` message; latency over all clients.

Prints a table, with the web workers' memory (RSS) before and after. Everything it started is stopped by PID or
removed by label at the end (services carry org.berth.test=1 and org.berth.bench=<run id>).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "platform"), str(REPO), str(REPO / "bench")]

from common import figure, save_figures  # noqa: E402

PRINTER = """
import sys, time
rate, count = float(sys.argv[1]), int(sys.argv[2])
start = time.time() + 0.5
for n in range(1, count + 1):
    delay = start + n / rate - time.time()
    if delay > 0:
        time.sleep(delay)
    print(n, f"{time.time():.6f}", flush=True)
time.sleep(3600)
"""
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
BUDGET_S = 180  # no phase waits longer than this


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def web_cpu(master: int) -> float:
    return sum(cpu_seconds(pid) for pid in worker_pids(master))


def worker_pids(master: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{master}\n" in status.read_text():
                pids.append(int(status.parent.name))
        except OSError:
            continue  # the process ended meanwhile
    return pids


def web_rss(master: int) -> float:
    return rss_mb(master) + sum(rss_mb(pid) for pid in worker_pids(master))


class Printer:
    """A Swarm service labelled like Berth's that prints numbered, timestamped lines."""

    def __init__(self, client, app: str, run_id: str):
        self.client, self.app, self.run_id = client, app, run_id
        self.services = []

    def start(self, process: str, rate: float, count: int):
        import docker

        labels = {
            "org.berth.app": self.app,
            "org.berth.process": process,
            "org.berth.release": "1",
            "org.berth.test": "1",
            "org.berth.bench": self.run_id,
        }
        service = self.client.services.create(
            "berth/stack:bookworm",
            ["python3", "-c", PRINTER, str(rate), str(count)],
            name=f"{self.app}-v1-{process}",
            labels=labels,
            container_labels=labels,
            restart_policy=docker.types.RestartPolicy(condition="none"),
        )
        self.services.append(service)
        return service

    def remove_all(self) -> None:
        for service in self.client.services.list(filters={"label": "org.berth.bench"}):
            try:
                service.remove()
            except Exception:  # already gone
                pass


async def client_task(
    url: str, token: str, seen: dict, ready: asyncio.Event, sockets: list, problems: list, compression
):
    """Record, per line number, how long after its printing each copy arrived. Ends when its socket is closed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedOK

    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, max_size=None, compression=compression) as socket:
        sockets.append(socket)
        ready.set()
        try:
            async for text in socket:
                received = time.time()
                message = json.loads(text)
                if message["type"] != "line":
                    problems.append(message)
                    continue
                n, printed = message["line"].split()
                seen.setdefault(int(n), []).append((received - float(printed)) * 1000)
        except ConnectionClosedOK:
            pass


async def phase(
    url: str,
    token: str,
    clients: int,
    printer: Printer,
    process: str,
    rate: float,
    seconds: float,
    *,
    web_pid: int,
    shipper_pid: int,
    compression,
):
    """Connect the clients, start a printer of rate*seconds lines, wait until every client has the last one."""
    count = int(rate * seconds)
    seen = [{} for _ in range(clients)]
    problems: list = []
    sockets: list = []
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(client_task(url, token, seen[i], readies[i], sockets, problems, compression))
        for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=60)
    started = time.monotonic()
    cpu_before = (web_cpu(web_pid), cpu_seconds(shipper_pid), time.process_time())
    await asyncio.to_thread(printer.start, process, rate, count)
    deadline = started + seconds + BUDGET_S
    while time.monotonic() < deadline and not all(count in s for s in seen):
        await asyncio.sleep(0.2)
    cpu_after = (web_cpu(web_pid), cpu_seconds(shipper_pid), time.process_time())
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            problems.append({"type": "error", "error": repr(result)})
    errors = [p for p in problems if p["type"] == "error"]
    if errors:
        print("client errors:", errors[:3], file=sys.stderr)
    complete = sum(
        1 for s in seen if sorted(s) == list(range(1, count + 1)) and all(len(v) == 1 for v in s.values())
    )
    latencies = [ms for s in seen for values in s.values() for ms in values]
    # the first 2 s include the container starting and the shipper attaching to it: reported apart
    warm = [ms for s in seen for n, values in s.items() if n > 2 * rate for ms in values]
    return {
        "clients": clients,
        "lines": count,
        "complete": complete,
        "problems": len(problems),
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies) if latencies else float("nan"),
        "warm_p50": percentile(warm, 0.50),
        "warm_p95": percentile(warm, 0.95),
        "cpu": [after - before for before, after in zip(cpu_before, cpu_after, strict=True)],
        "elapsed": time.monotonic() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="runs of both phases")
    parser.add_argument(
        "--no-compression", action="store_true", help="clients do not offer permessage-deflate (browsers do)"
    )
    args = parser.parse_args()

    os.environ.update({"REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "berth.config.settings"})
    home = Path(tempfile.mkdtemp(prefix="berth-bench-logs-"))
    os.environ["BERTH_HOME"] = str(home / "client")
    import django

    django.setup()
    import redis
    from berth.runtime.client import docker_client

    from tests.observe.webserver import start_shipper, start_web, stop

    run_id = uuid.uuid4().hex[:8]
    app = f"bench-logs-{run_id}"
    rds = redis.Redis.from_url(REDIS_URL)
    docker = docker_client()
    printer = Printer(docker, app, run_id)
    printer.remove_all()  # leftovers of a killed earlier run
    (home / "web").mkdir()
    web = start_web(home / "web", redis_url=REDIS_URL, apps=[app], workers=2)
    shipper = start_shipper(
        web.env, home / "shipper.log", "--no-metrics", "--only-label", f"org.berth.bench={run_id}"
    )
    rows = []
    try:
        time.sleep(2)  # the shipper's first scan and event subscription
        url = f"{web.url.replace('http://', 'ws://')}/ws/apps/{app}/logs?tail=0"
        before = web_rss(web.process.pid)
        options = {
            "web_pid": web.process.pid,
            "shipper_pid": shipper.pid,
            "compression": None if args.no_compression else "deflate",
        }
        for repeat in range(max(1, min(args.repeats, 10))):
            one = asyncio.run(
                phase(
                    url, web.tokens["ada"], 1, printer, f"one{repeat}", args.rate, args.seconds / 2, **options
                )
            )
            many = asyncio.run(
                phase(
                    url,
                    web.tokens["ada"],
                    args.clients,
                    printer,
                    f"many{repeat}",
                    args.rate,
                    args.seconds,
                    **options,
                )
            )
            rows += [("1 client", one), (f"{args.clients} clients", many)]
        time.sleep(1)
        after = web_rss(web.process.pid)
        shipper_rss = rss_mb(shipper.pid)
    finally:
        # the processes first: a failed removal (the Docker engine restarted, say) must not leave them running
        stop(shipper)
        web.stop()
        try:
            printer.remove_all()
        finally:
            rds.delete(f"berth:logs:{app}", f"berth:events:{app}")

    print(
        f"\nlog line printed -> received on the WebSocket ({args.rate:g} lines/s, gunicorn+uvicorn, 2 workers)\n"
    )
    header = (
        f"{'phase':<12} {'lines':>6} {'clients ok':>11} {'dropped/gap':>12} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'max ms':>8} {'p50 >2s':>8} {'p95 >2s':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<12} {r['lines']:>6} {str(r['complete']) + '/' + str(r['clients']):>11} {r['problems']:>12} "
            f"{r['p50']:>8.1f} {r['p95']:>8.1f} {r['max']:>8.1f} {r['warm_p50']:>8.1f} {r['warm_p95']:>8.1f}"
        )
    print(
        "(p50/p95 >2s: lines printed after the first 2 s, once the container runs and the shipper follows it)"
    )
    print("\nCPU seconds used during each phase (web workers / shipper / benchmark clients, wall time):")
    for name, r in rows:
        web_s, ship_s, client_s = r["cpu"]
        print(f"  {name:<12} {web_s:6.1f} / {ship_s:5.1f} / {client_s:5.1f}   in {r['elapsed']:.1f} s")
    with open("/proc/loadavg") as loadavg:
        print(f"load average at the end: {loadavg.read().split()[0]} on {os.cpu_count()} CPUs")
    print(f"\nweb process RSS (master + workers): {before:.1f} MB before, {after:.1f} MB after")
    print(f"shipper RSS: {shipper_rss:.1f} MB")
    complete = all(r["complete"] == r["clients"] and r["problems"] == 0 for _, r in rows)
    ok = complete and all(r["p95"] <= 250 for _, r in rows)
    print("goal (p95 <= 250 ms, no line lost):", "met" if ok else "NOT met")
    figures = []
    for label in ("1 client", f"{args.clients} clients"):
        mine = [r for name, r in rows if name == label]
        seconds = args.seconds / 2 if label == "1 client" else args.seconds
        figures += [
            figure(f"log line → WebSocket, {label}, p50", [r["p50"] for r in mine], "ms"),
            figure(
                f"log line → WebSocket, {label}, p95",
                [r["p95"] for r in mine],
                "ms",
                goal="≤ 250 ms",
                limit=250,
                note=f"{args.rate:g} lines/s for {seconds:g} s",
            ),
            figure(
                f"  lines lost or duplicated, {label}",
                [r["clients"] - r["complete"] + r["problems"] for r in mine],
                "lines",
                goal="0",
                limit=0,
            ),
        ]
    save_figures("log_latency", figures)
    return 0 if complete else 1  # a missed latency goal shows in the table; a lost line is a failure


if __name__ == "__main__":
    sys.exit(main())
