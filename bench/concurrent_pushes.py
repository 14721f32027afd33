"""Benchmark: 10 `git push`es to 10 apps at once, and the memory of web, worker and watcher at idle and under load.

    .venv/bin/python bench/concurrent_pushes.py [--apps 10] [--rounds 3]

Starts the whole platform as the end-to-end tests do (bench/deploy_platform: HAProxy, gunicorn+uvicorn with 2
workers, a Celery worker whose pool grows to 10 processes as deploy/Procfile's, the watcher). --apps apps of the bench team are first deployed
together (round 0: their first release), then --rounds times each gets a code change and all are pushed at the
same instant (a barrier). Every push must succeed. Figures per round:

- all live: from the first `git push` starting until the router serves the new code of every app (each app polled
  through the router every 50 ms from its own thread);
- per push: from its start until the router serves its new code (p50 and max over the apps).

Memory is RSS summed over each process's tree (gunicorn master + workers; Celery main + pool children and what they
run; the watcher), from /proc/<pid>/smaps_rollup (PSS too, in the JSON). Idle: the apps live, nothing happening for
5 s, sampled before every round. Under load: the peak sampled every 0.5 s during a round, while the pushes run,
`wrk` drives 8 keep-alive connections through the router at an app that is not being pushed, and a client loops
over the API (apps list, app detail, releases). Every loop is bounded in count and time.
Prints tables and writes bench/results/concurrent_pushes.json (+ .figures.json for bench/run_all.py).
"""

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid

from common import RESULTS, figure, percentile, print_table, save_figures, tree_memory_mb
from deploy_platform import Platform
from deploy_under_load import start_wrk, stop_wrk

PUSH_TIMEOUT_S = 300  # one `git push` (build + deploy) may not take longer
ROUND_TIMEOUT_S = 480  # nor may a whole round (all pushes live)
API_REQUESTS_MAX = 5000  # the API load loop stops at this count even if a round hangs
QUIET_S = 5


class Round:
    """One simultaneous push of every source; `run()` returns its timings."""

    def __init__(self, platform: Platform, sources: dict, label: str):
        self.platform, self.sources, self.label = platform, sources, label
        self.expected = {name: f"{label} {name} {uuid.uuid4().hex[:8]}" for name in sources}
        self.started: dict[str, float] = {}
        self.pushed: dict[str, float] = {}
        self.live: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.outputs: dict[str, str] = {}  # what each push printed (git writes the remote's lines to stderr)

    def serving(self, name: str) -> bool:
        import httpx

        try:
            answer = httpx.get(
                f"http://127.0.0.1:{self.platform.http_port}/",
                headers={"Host": f"{name}.localhost"},
                timeout=5,
            )
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and answer.text.strip() == self.expected[name]

    def run(self) -> dict:
        for name, source in self.sources.items():
            source.commit(self.expected[name])
        barrier = threading.Barrier(len(self.sources))
        deadline = time.monotonic() + ROUND_TIMEOUT_S

        def push(name: str) -> None:
            barrier.wait(timeout=60)
            self.started[name] = time.monotonic()
            try:
                done = self.sources[name].git("push", "berth", "main", check=False, timeout=PUSH_TIMEOUT_S)
                self.outputs[name] = done.stderr
                if done.returncode != 0:
                    self.errors[name] = done.stderr[-1500:]
            except (
                subprocess.TimeoutExpired
            ) as error:  # recorded as this push's failure, with what it printed
                printed = (
                    error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
                )
                self.errors[name] = f"no answer in {PUSH_TIMEOUT_S} s; it printed:\n{(printed or '')[-1500:]}"
            self.pushed[name] = time.monotonic()

        def poll(name: str) -> None:
            while time.monotonic() < deadline and name not in self.errors:
                if name in self.started and self.serving(name):
                    self.live[name] = time.monotonic()
                    return
                time.sleep(0.05)

        threads = [threading.Thread(target=push, args=(n,), daemon=True) for n in self.sources]
        threads += [threading.Thread(target=poll, args=(n,), daemon=True) for n in self.sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1, deadline - time.monotonic()))
        first = min(self.started.values())
        per_push = [self.live[n] - self.started[n] for n in self.sources if n in self.live]
        return {
            "round": self.label,
            "ok": not self.errors and len(self.live) == len(self.sources),
            "failed": sorted(set(self.sources) - set(self.live)),
            "errors": self.errors,
            "all_live_s": (max(self.live.values()) - first) if len(self.live) == len(self.sources) else None,
            "push_to_live_s": sorted(per_push),
            "git_push_s": sorted(self.pushed[n] - self.started[n] for n in self.pushed),
        }


class Sampler:
    """Samples the memory of web, worker and watcher every `interval` seconds until stopped; keeps the peaks."""

    def __init__(self, platform: Platform, interval: float = 0.5):
        self.pids = {name: platform.processes[name].pid for name in ("web", "worker", "watcher")}
        self.interval = interval
        self.peak = {name: {"rss_mb": 0.0, "pss_mb": 0.0} for name in self.pids}
        self.peak_breakdown: dict[str, dict] = {}  # the RSS by command name at each process's RSS peak
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        return {name: tree_memory_mb(pid) for name, pid in self.pids.items()}

    def _run(self) -> None:
        deadline = time.monotonic() + ROUND_TIMEOUT_S + 60
        while not self.stopped.is_set() and time.monotonic() < deadline:
            for name, memory in self.sample().items():
                if memory["rss_mb"] > self.peak[name]["rss_mb"]:
                    self.peak_breakdown[name] = memory["by_command_mb"]
                for key in ("rss_mb", "pss_mb"):
                    self.peak[name][key] = max(self.peak[name][key], memory[key])
            self.stopped.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


class ApiLoad:
    """One client looping over the API (apps list, an app, its releases) until stopped; bounded in count."""

    def __init__(self, platform: Platform, apps: list[str]):
        self.platform, self.apps = platform, apps
        self.count = self.failed = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        deadline = time.monotonic() + ROUND_TIMEOUT_S + 60
        with self.platform.api() as api:
            while not self.stopped.is_set() and time.monotonic() < deadline and self.count < API_REQUESTS_MAX:
                app = self.apps[self.count % len(self.apps)]
                for path in ("/apps", f"/apps/{app}", f"/apps/{app}/releases"):
                    try:
                        self.failed += api.get(path).status_code != 200
                    except httpx.HTTPError:
                        self.failed += 1
                    self.count += 1
                self.stopped.wait(0.05)

    def __enter__(self) -> "ApiLoad":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


def keep_logs(platform: Platform) -> None:
    """The platform's process logs, kept past its clean-up for whoever reads a failure."""
    target = RESULTS / "concurrent_pushes-logs"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(platform.logs, target)
    print(f"the platform's logs: {target}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    apps, rounds = max(1, min(args.apps, 20)), max(1, min(args.rounds, 10))
    results, idle, loaded, loads, breakdowns = [], [], [], [], []
    with Platform() as platform:
        # the platform's own app is the wrk target: live, but never pushed during the rounds
        first = platform.push("wrk target")
        if first.returncode != 0:
            raise SystemExit(f"the wrk target's deploy failed:\n{(first.stderr or '')[-2000:]}")
        from berth.apps.services import app_create  # Django is set up by now

        sources = {}
        for number in range(apps):
            name = f"bench-cp{number:02d}-{uuid.uuid4().hex[:4]}"
            app_create(team=platform.team, name=name, actor=platform.user)
            sources[name] = platform.source(name)
        first = Round(platform, sources, "first").run()
        print(f"round 0 (first deploys): all live in {first['all_live_s']} s, ok={first['ok']}", flush=True)
        if not first["ok"]:
            print(json.dumps(first["errors"], indent=2)[-6000:], file=sys.stderr)
            keep_logs(platform)
            return 1
        sampler = Sampler(platform)
        for number in range(1, rounds + 1):
            time.sleep(QUIET_S)
            idle.append(sampler.sample())
            wrk = start_wrk(platform, 8)
            try:
                with Sampler(platform) as peak, ApiLoad(platform, list(sources)) as api_load:
                    result = Round(platform, sources, f"round{number}").run()
            finally:
                load = stop_wrk(wrk)
            loaded.append(peak.peak)
            breakdowns.append(peak.peak_breakdown)
            load.pop("wrk")
            loads.append({**load, "api_requests": api_load.count, "api_failed": api_load.failed})
            results.append(result)
            print(
                f"round {number}: ok={result['ok']} all live {result['all_live_s']} s, "
                f"per push p50 {percentile(result['push_to_live_s'], 0.5):.1f} s "
                f"max {max(result['push_to_live_s'], default=0):.1f} s; wrk {load['failed']}/{load['total']} failed; "
                f"API {api_load.failed}/{api_load.count} failed",
                flush=True,
            )
            if not result["ok"]:
                print(json.dumps(result["errors"], indent=2)[-6000:], file=sys.stderr)
                keep_logs(platform)
        time.sleep(QUIET_S)
        idle.append(sampler.sample())

    ok = all(r["ok"] for r in results)
    all_live = [r["all_live_s"] for r in results]
    p50s = [percentile(r["push_to_live_s"], 0.5) for r in results if r["push_to_live_s"]]
    maxes = [max(r["push_to_live_s"]) for r in results if r["push_to_live_s"]]
    figures = [
        figure(
            f"{apps} concurrent pushes to {apps} apps → all live (code change)",
            all_live,
            "s",
            goal="≤ 15 s",
            limit=15,
            note=f"{sum(r['ok'] for r in results)}/{len(results)} rounds all succeeded",
        ),
        figure(f"  per push → live, p50 over the {apps}", p50s, "s"),
        figure(f"  per push → live, max over the {apps}", maxes, "s"),
        figure(
            f"{apps} concurrent first pushes (new apps) → all live",
            [first["all_live_s"]],
            "s",
            goal="≤ 30 s",
            limit=30,
        ),
    ]
    for process in ("web", "worker", "watcher"):
        figures.append(
            figure(f"memory {process}, idle (RSS, process tree)", [s[process]["rss_mb"] for s in idle], "MB")
        )
        figures.append(
            figure(
                f"memory {process}, under load (peak RSS)",
                [s[process]["rss_mb"] for s in loaded],
                "MB",
                note="pushes + wrk + API",
                # the web tree holds every push in progress (git and its hook); the hook is a bash relay
                goal="≤ 400 MB" if process == "web" else "",
                limit=400 if process == "web" else None,
            )
        )
    rows = [
        [f["name"], f["runs"], f["median"], f["min"], f["max"], f["note"]]
        for f in figures
        if f["median"] is not None
    ]
    print()
    print_table(
        f"{apps} concurrent pushes ({rounds} rounds) and memory",
        ["", "runs", "median", "min", "max", "note"],
        rows,
    )
    pss = {
        process: {
            "idle_median_mb": percentile([s[process]["pss_mb"] for s in idle], 0.5),
            "loaded_median_mb": percentile([s[process]["pss_mb"] for s in loaded], 0.5),
        }
        for process in ("web", "worker", "watcher")
    }
    print(
        "PSS (shared pages divided among the processes sharing them), median MB idle / under load: "
        + ", ".join(f"{p} {v['idle_median_mb']:.0f} / {v['loaded_median_mb']:.0f}" for p, v in pss.items())
    )
    for process, commands in (breakdowns[-1] if breakdowns else {}).items():
        top = sorted(commands.items(), key=lambda item: -item[1])[:4]
        print(
            f"{process} tree at its peak RSS (last round), by command: "
            + ", ".join(f"{c} {mb:.0f} MB" for c, mb in top)
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "concurrent_pushes.json").write_text(
        json.dumps(
            {
                "apps": apps,
                "first": first,
                "rounds": results,
                "idle": idle,
                "loaded": loaded,
                "load": loads,
                "pss": pss,
            },
            indent=2,
        )
        + "\n"
    )
    save_figures("concurrent_pushes", figures)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
