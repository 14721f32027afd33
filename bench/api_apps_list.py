"""Benchmark: GET /api/v1/apps and the dashboard's apps page for a user with 100 apps, on gunicorn + uvicorn.

    .venv/bin/python bench/api_apps_list.py [--apps 100] [--requests 200] [--concurrency 1,8] [--database-url URL]

Uses a throwaway BERTH_HOME (SQLite unless --database-url names a PostgreSQL database it may wipe: it runs
migrate and creates a user "bench" with its apps there). Starts gunicorn on a free loopback port, measures the
latency of sequential and concurrent requests (bounded in count and time) and prints a table. The server is
stopped by its PID at the end.

Two clients measure every page. `httpx`: Python threads in this process, as a script would call the API; its 8
threads share one interpreter lock, so an answer that has arrived can wait for another thread's turn, and that wait
counts in its latency. `wrk`: one C thread over keep-alive connections (as many as clients), which measures the
server's latency with almost nothing of its own (both share the machine's CPUs with the server and PostgreSQL).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, save_figures  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv/bin/python"
GUNICORN = REPO / ".venv/bin/gunicorn"
TIME_BUDGET_S = 120  # no phase may run longer than this
WRK_SECONDS = 8  # one wrk run: a fixed time, not a count
# wrk's summary as one JSON line (its own table has no p95); latencies in microseconds
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "p50": %d, "p95": %d, "max": %d}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency.max))
end
"""

SETUP = """
import sys
from django.contrib.auth import get_user_model
from berth.accounts.services import team_create, token_create
from berth.apps.services import app_create
from berth.releases.services import release_create
n = int(sys.argv[1])
user = get_user_model().objects.create_user("bench", "bench@example.test", "bench-password")
team = team_create(name="bench", actor=user)
# a platform admin lifts the team's quotas (default 50 apps, 100 replicas, ...): 0 is no limit
team.max_apps = team.max_replicas = team.max_memory_mb = 0
team.save(update_fields=["max_apps", "max_replicas", "max_memory_mb"])
for i in range(n):
    app = app_create(team=team, name=f"bench-app-{i:03d}", actor=user)
    if i % 2 == 0:  # half the apps have a release, so current_release is computed for real
        release_create(app=app, image=f"img:{i}", procfile={"web": "serve"}, description="", actor=user)
print(token_create(user=user, name="bench")[1])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_load(url: str, auth: dict, total: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [total]
    deadline = time.monotonic() + TIME_BUDGET_S

    def worker():
        with httpx.Client(timeout=10, **auth) as client:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - start
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed * 1000)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIME_BUDGET_S + 15)
    return latencies, time.perf_counter() - start


def run_wrk(url: str, auth: dict, concurrency: int, report: Path) -> dict:
    """`concurrency` keep-alive connections for WRK_SECONDS on one wrk thread; the latencies of its summary."""
    headers = [f"{k}: {v}" for k, v in auth.get("headers", {}).items()]
    headers += [f"Cookie: {k}={v}" for k, v in auth.get("cookies", {}).items()]
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{WRK_SECONDS}s", "-s", str(report)]
    for header in headers:
        command += ["-H", header]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=WRK_SECONDS + 30, check=True
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if summary["errors"]:
        raise SystemExit(f"wrk: {summary['errors']} requests failed on {url}:\n{done.stdout}")
    return {
        "requests": summary["requests"],
        "p50_ms": round(summary["p50"] / 1000, 1),
        "p95_ms": round(summary["p95"] / 1000, 1),
        "max_ms": round(summary["max"] / 1000, 1),
        "req_per_s": round(summary["requests"] / summary["seconds"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions of every page × client count")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (deploy/Procfile uses 2)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL database to wipe and use")
    parser.add_argument(
        "--clients", default="httpx,wrk", help="which load clients measure: httpx, wrk or both (see above)"
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    env = {
        **os.environ,
        "BERTH_HOME": str(home),
        "BERTH_SECRET_KEY": "bench",
        "BERTH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO / "platform"),
    }
    env.pop("DATABASE_URL", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    server = None
    try:
        if args.database_url:
            subprocess.run(
                [str(PYTHON), "manage.py", "flush", "--no-input"], cwd=REPO, env=env, check=False, timeout=120
            )
        subprocess.run(
            [str(PYTHON), "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True, timeout=300
        )
        setup = subprocess.run(
            [str(PYTHON), "manage.py", "shell", "-c", SETUP.replace("sys.argv[1]", str(args.apps))],
            cwd=REPO,
            env=env,
            check=False,
            timeout=300,
            capture_output=True,
            text=True,
        )
        if setup.returncode != 0:
            raise SystemExit(f"setting up the apps failed:\n{setup.stderr[-3000:]}")
        token = setup.stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen(
            [
                str(GUNICORN),
                "berth.config.asgi:application",
                "--worker-class",
                "berth.config.worker.BerthUvicornWorker",  # deploy/Procfile's
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--preload",  # as deploy/Procfile: the workers forked from one master that imported everything
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(home / "gunicorn.log").open("w"),
        )
        url = f"http://127.0.0.1:{port}/api/v1/apps"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                assert len(response.json()) == args.apps, response.text[:200]
                break
            except (httpx.TransportError, ValueError):
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.stderr.write((home / "gunicorn.log").read_text())
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        api_auth = {"headers": {"Authorization": f"Bearer {token}"}}
        pages = [
            ("GET /api/v1/apps", url, api_auth),
            ("GET /api/v1/apps?limit=100", f"{url}?limit=100", api_auth),
        ]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            browser.get("/login/")
            login = browser.post(
                "/login/",
                data={
                    "username": "bench",
                    "password": "bench-password",
                    "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                },
                headers={"Referer": f"http://127.0.0.1:{port}/login/"},
            )
            assert login.status_code in (200, 302) and "sessionid" in browser.cookies, login.text[:200]
            session = {"cookies": {"sessionid": browser.cookies["sessionid"]}}
        page_url = f"http://127.0.0.1:{port}/apps/"
        assert "bench-app-099" in httpx.get(page_url, timeout=10, **session).text or args.apps < 100
        pages.append(("GET /apps/ (dashboard)", page_url, session))

        database = "PostgreSQL" if args.database_url else "SQLite"
        print(f"{args.apps} apps, {database}, gunicorn+uvicorn x{args.workers} workers")
        print(
            f"{'page':<24} {'client':>6} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
            f"{'req/s':>8}"
        )
        rows = []
        clients = [c for c in ("httpx", "wrk") if c in args.clients.split(",")]
        if "wrk" in clients and shutil.which("wrk") is None:
            raise SystemExit(
                "wrk is not installed (Debian's wrk; make test installs it), or pass --clients httpx"
            )
        report = home / "wrk-report.lua"
        report.write_text(WRK_REPORT)
        plan = [(p, int(c), client) for p in pages for c in args.concurrency.split(",") for client in clients]
        for (page, page_url, auth), concurrency, client in plan * max(1, min(args.rounds, 10)):
            run_load(page_url, auth, 20, 1)  # warm up every worker's connection and caches
            if client == "wrk":
                row = {"page": page, "client": client, "clients": concurrency}
                row |= run_wrk(page_url, auth, concurrency, report)
            else:
                latencies, wall = run_load(page_url, auth, args.requests, concurrency)
                row = {
                    "page": page,
                    "client": client,
                    "clients": concurrency,
                    "requests": len(latencies),
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p95_ms": round(percentile(latencies, 0.95), 1),
                    "max_ms": round(max(latencies), 1),
                    "req_per_s": round(len(latencies) / wall),
                }
            rows.append(row)
            print(
                f"{row['page']:<24} {client:>6} {row['clients']:>7} {row['requests']:>8} {row['p50_ms']:>8.1f} "
                f"{row['p95_ms']:>8.1f} {row['max_ms']:>8.1f} {row['req_per_s']:>8}",
                flush=True,
            )
        figures = []
        for (page, _, _), concurrency, client in plan:
            mine = [
                r for r in rows if r["page"] == page and r["clients"] == concurrency and r["client"] == client
            ]
            for key in ("p50_ms", "p95_ms"):
                figures.append(
                    figure(
                        f"{page}, {args.apps} apps, {concurrency} client{'s' if concurrency > 1 else ''} ({client}), "
                        f"{key[:3]}",
                        [r[key] for r in mine],
                        "ms",
                        note=database,
                    )
                )
        save_figures("api_apps_list", figures)
        results = REPO / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "api_apps_list.json").write_text(
            json.dumps(
                {"apps": args.apps, "database": database, "workers": args.workers, "rows": rows}, indent=2
            )
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
