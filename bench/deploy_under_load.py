"""Benchmark: zero-downtime deploys. `wrk` drives keep-alive load through the router while 10 `git push` deploys
run in a row (then a rollback, a rolling restart, web scaled to 3 and back to 1); counts failed/total requests
and each cut-over's time.

    .venv/bin/python bench/deploy_under_load.py [--deploys 10] [--connections 16]

Starts the whole platform as the end-to-end tests do (bench/deploy_platform). Failed requests are wrk's socket
errors (connect, read, write, timeout) plus non-2xx answers. The cut-over is the time from the new release being
ready (every web task answered Berth's HTTP check) until the old release's services are removed (traffic moved,
old endpoints drained); Berth prints it at the end of each roll-out. Goal: 0 failed requests.
With --scrape (the default) the log shipper runs as under `make up` and GET /metrics is scraped every 2 s through
the whole run, as Prometheus would: how long each scrape took, and the app's request rate, 5xx rate and p95 as the
scrapes saw them (bench/results/deploy_under_load.scrapes.json keeps every scrape's figures).
Prints a table and writes bench/results/deploy_under_load.json.
"""

import argparse
import json
import re
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
from common import figure, print_table, save_figures
from deploy_platform import Platform, wait_seconds

RESULTS = Path(__file__).resolve().parent / "results"
MAX_WRK_SECONDS = 900  # bounds the load even if the deploys hang


def start_wrk(platform: Platform, connections: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{MAX_WRK_SECONDS}s", "-H", f"Host: {platform.host}",
         f"http://127.0.0.1:{platform.http_port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop_wrk(process: subprocess.Popen) -> dict:
    process.send_signal(signal.SIGINT)  # wrk stops and prints its summary
    out, _ = process.communicate(timeout=30)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = (sum(int(n) for n in socket.groups()) if socket else 0) + (
        int(non_2xx.group(1)) if non_2xx else 0
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"total": total, "failed": failed, "requests_per_s": rate, "wrk": out}


SCRAPE_EVERY_S = 2.0
SCRAPES_MAX = 1000  # bounds the scraper even if the run hangs


class Scraper(threading.Thread):
    """GET /metrics every SCRAPE_EVERY_S until stopped (at most SCRAPES_MAX times): each scrape's time and the app's
    figures in it."""

    def __init__(self, url: str, token: str, app: str):
        super().__init__(daemon=True)
        self.url, self.token, self.app = url, token, app
        self.scrapes: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=10) as client:
            while not self.stopping.is_set() and len(self.scrapes) < SCRAPES_MAX:
                t0 = time.monotonic()
                scrape = {"at": round(time.time(), 2)}
                try:
                    answer = client.get(self.url)
                    scrape["status"] = answer.status_code
                    scrape["ms"] = round((time.monotonic() - t0) * 1000, 1)
                    for line in answer.text.splitlines():
                        if f'app="{self.app}"' in line and not line.startswith("#"):
                            name, _, value = line.rpartition(" ")
                            scrape[name.split("{")[0]] = float(value)
                except httpx.HTTPError as exc:
                    scrape["error"] = str(exc)
                self.scrapes.append(scrape)
                self.stopping.wait(max(0.0, SCRAPE_EVERY_S - (time.monotonic() - t0)))


def scrape_rows(scrapes: list[dict]) -> list[list]:
    ok = [s for s in scrapes if s.get("status") == 200]
    times = sorted(s["ms"] for s in ok)

    def spread(key: str, factor: float = 1.0) -> str:
        values = [s[key] * factor for s in ok if key in s]
        if not values:
            return "-"
        return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"

    return [
        [
            len(scrapes),
            len(scrapes) - len(ok),
            f"{statistics.median(times):.0f} / {max(times):.0f}" if times else "-",
            spread("berth_app_requests_per_second"),
            spread("berth_app_5xx_per_second"),
            spread("berth_app_response_p95_seconds", 1000),
        ]
    ]


def screenshot(platform: Platform, path: Path) -> None:
    """The app's dashboard page, logged in as the bench user, once its charts have drawn the history."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            base = f"http://127.0.0.1:{platform.web_port}"
            page.goto(f"{base}/login/")
            page.fill("#id_username", "bench")
            page.fill("#id_password", "x")
            page.click("#login-submit")
            page.wait_for_url(re.compile(r".*/apps/$"))
            page.goto(f"{base}/apps/{platform.app.name}/")
            page.wait_for_function(
                "Number(document.querySelector('#charts').dataset.loaded) >= 1", timeout=30_000
            )
            page.locator("#charts").scroll_into_view_if_needed()
            path.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#charts").screenshot(path=str(path))
            print(f"screenshot of the charts: {path}")
        finally:
            browser.close()


def seconds(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--no-scrape", dest="scrape", action="store_false", help="no shipper, no /metrics scrapes"
    )
    parser.add_argument(
        "--screenshot",
        metavar="PNG",
        help="after the deploys, with the load still on, the app's dashboard page (its charts) in Chromium",
    )
    args = parser.parse_args()
    rows, runs = [], []
    scraper = None
    with Platform(shipper=args.scrape) as platform:
        first = platform.push("v1")
        if first.returncode != 0:
            raise SystemExit(f"the first deploy failed:\n{first.stderr}")
        if args.scrape:
            from berth.operations.exposition import metrics_token

            scraper = Scraper(
                f"http://127.0.0.1:{platform.web_port}/metrics", metrics_token(), platform.app.name
            )
            scraper.start()
        wrk = start_wrk(platform, args.connections)
        time.sleep(1)
        started = time.monotonic()
        try:
            for number in range(2, args.deploys + 2):
                t0 = time.monotonic()
                result = platform.push(f"v{number}")
                run = {
                    "what": f"deploy v{number}",
                    "ok": result.returncode == 0,
                    "push_s": round(time.monotonic() - t0, 2),
                    "ready_s": seconds(r"Ready in ([\d.]+)s", result.stderr),
                    "cutover_s": seconds(r"cut-over ([\d.]+)s", result.stderr),
                }
                if not run["ok"]:
                    run["error"] = result.stderr[-2000:]
                runs.append(run)
            with platform.api() as api:
                from berth.releases.models import Release

                t0 = time.monotonic()
                answer = api.post(f"/apps/{platform.app.name}/rollback", json={"version": 1})
                version = answer.json()["version"]
                wait_seconds(
                    lambda: Release.objects.filter(app=platform.app, version=version, status="live").exists(),
                    timeout=120,
                    interval=0.1,
                )
                runs.append({"what": "rollback to v1", "ok": True, "push_s": round(time.monotonic() - t0, 2)})
                t0 = time.monotonic()
                api.post(f"/apps/{platform.app.name}/ps/restart", json={})
                wait_seconds(lambda: restarted(platform.app.name), timeout=120, interval=0.1)
                runs.append({"what": "restart", "ok": True, "push_s": round(time.monotonic() - t0, 2)})
                for replicas in (3, 1):
                    t0 = time.monotonic()
                    answer = api.patch(
                        f"/apps/{platform.app.name}/formation",
                        json=[{"process": "web", "replicas": replicas}],
                    )
                    answer.raise_for_status()
                    wait_seconds(
                        lambda n=replicas: routed_up(platform.app.name) == n, timeout=120, interval=0.1
                    )
                    runs.append(
                        {
                            "what": f"scale web={replicas}",
                            "ok": True,
                            "push_s": round(time.monotonic() - t0, 2),
                        }
                    )
            if args.screenshot:
                time.sleep(12)  # one more 10 s window of the load in the history
                screenshot(platform, Path(args.screenshot))
        finally:
            load = stop_wrk(wrk)
            if scraper is not None:
                time.sleep(12)  # the last 10 s window of the load reaches the history, then a scrape
                scraper.stopping.set()
                scraper.join(timeout=15)
        load["seconds"] = round(time.monotonic() - started, 1)
    for run in runs:
        rows.append([run["what"], "yes" if run["ok"] else "NO", run["push_s"], run.get("ready_s") or "",
                     run.get("cutover_s") or ""])  # fmt: skip
    print_table(
        f"{args.deploys} deploys, a rollback, a restart, scale to 3 and back to 1 in a row under wrk ({args.connections} keep-alive "
        "connections through HAProxy)",
        ["operation", "ok", "total s", "ready s", "cut-over s"],
        rows,
    )
    cutovers = [run["cutover_s"] for run in runs if run.get("cutover_s") is not None]
    print_table(
        "requests during all of them",
        ["failed", "total", "req/s", "seconds", "cut-over min s", "cut-over max s"],
        [[load["failed"], load["total"], load["requests_per_s"], load["seconds"],
          min(cutovers, default=0.0), max(cutovers, default=0.0)]],
    )  # fmt: skip
    if scraper is not None:
        print_table(
            "GET /metrics scraped every 2 s through all of it (the app's figures: min / median / max of the scrapes)",
            ["scrapes", "failed", "scrape ms p50 / max", "app req/s", "app 5xx/s", "app p95 ms"],
            scrape_rows(scraper.scrapes),
        )
        (RESULTS / "deploy_under_load.scrapes.json").write_text(json.dumps(scraper.scrapes, indent=1) + "\n")
    deploys = [run for run in runs if run["what"].startswith("deploy")]
    save_figures(
        "deploy_under_load",
        [
            figure(
                f"failed requests over {args.deploys} deploys + rollback + restart + scale 3/1 under wrk",
                [load["failed"]],
                "requests",
                goal="0",
                limit=0,
                note=f"of {load['total']:,} ({args.connections} keep-alive conn.); one run, a count",
            ),
            figure(
                "deploy (git push) total",
                [run["push_s"] for run in deploys],
                "s",
                note=f"{sum(run['ok'] for run in deploys)}/{len(deploys)} ok",
            ),
            figure("  new release ready (web tasks answer)", [run["ready_s"] for run in deploys], "s"),
            figure("  cut-over: ready → old release removed", cutovers, "s"),
        ]
        + [
            figure(f"{run['what']} → done", [run["push_s"]], "s")
            for run in runs
            if not run["what"].startswith("deploy")
        ],
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy_under_load.json").write_text(
        json.dumps(
            {"deploys": args.deploys, "connections": args.connections, "runs": runs, "load": load}, indent=2
        )
    )
    return 0 if load["failed"] == 0 and all(run["ok"] for run in runs) else 1


def routed_up(app: str) -> int:
    from berth.routing.haproxy_router import HaproxyRouter

    endpoints = HaproxyRouter().state().get(app, {}).get("endpoints", [])
    # all of them in rotation, none on its way out
    return len(endpoints) if all(status == "UP" for *_, status in endpoints) else -1


def restarted(app: str) -> bool:
    import redis
    from berth.observe.services import events_key
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return any(fields.get("kind") == "restarted" for _id, fields in client.xrange(events_key(app)))


if __name__ == "__main__":
    raise SystemExit(main())
