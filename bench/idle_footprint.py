"""Benchmark: the memory Berth's own processes take when nothing happens, before and after some work.

    .venv/bin/python bench/idle_footprint.py [--apps 4] [--idle 90]

Starts the platform as deploy/Procfile runs it, through the deploy benchmarks' bench/deploy_platform: HAProxy,
gunicorn+uvicorn with 2 workers, the Celery worker with `--autoscale 10,0`, and the `daemons` process (the watcher,
the log shipper and beat in one). (Berth's registry, a `docker-registry` of ~24 MB, is not started: no benchmark pushes to
it.) Measures the PSS of each process tree (shared pages divided among their sharers: what the tree really costs)
after 30 s of quiet (the median of 10 samples 2 s apart: beat's tick every 15 s gives the worker a pool process
for ~3 s, which a single sample may or may not catch); then pushes --apps apps at once (the worker's pool grows), and samples every 10 s for --idle
seconds of quiet after the last one is live: the pool should be back to no process (one for a moment at each of
beat's ticks), the rest as before. Prints a table, writes bench/results/idle_footprint.json (+ .figures.json for bench/run_all.py). Stops what it started, by PID.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

from common import RESULTS, figure, print_table, process_tree, save_figures, tree_memory_mb
from deploy_platform import Platform

QUIET_S = 30
SAMPLES, SAMPLE_EVERY_S = 10, 2.0  # an idle figure is the median of these, per process tree
GOAL_MB = 350  # issue 17: Berth's own processes, idle, one node


def footprint(platform: Platform) -> dict[str, dict]:
    """PSS and RSS (MB) and the process count of each of the platform's process trees."""
    trees = {}
    for name, process in platform.processes.items():
        memory = tree_memory_mb(process.pid)
        trees[name] = {
            "pss_mb": round(memory["pss_mb"], 1),
            "rss_mb": round(memory["rss_mb"], 1),
            "processes": len(process_tree(process.pid)),
        }
    return trees


def footprint_median(platform: Platform) -> dict[str, dict]:
    """footprint() sampled SAMPLES times, SAMPLE_EVERY_S apart: the median of each tree's figures, and the process
    counts seen."""
    samples = []
    for n in range(SAMPLES):
        if n:
            time.sleep(SAMPLE_EVERY_S)
        samples.append(footprint(platform))
    trees = {}
    for name in samples[0]:
        values = [sample[name] for sample in samples if name in sample]
        trees[name] = {
            "pss_mb": round(statistics.median(v["pss_mb"] for v in values), 1),
            "rss_mb": round(statistics.median(v["rss_mb"] for v in values), 1),
            "processes": round(statistics.median(v["processes"] for v in values)),
            "processes_seen": sorted({v["processes"] for v in values}),
        }
    return trees


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=4, help="apps pushed at once (the worker's pool grows)")
    parser.add_argument("--idle", type=float, default=90, help="seconds of quiet sampled after the pushes")
    args = parser.parse_args()
    apps = max(1, min(args.apps, 10))
    idle_s = max(10.0, min(args.idle, 600.0))
    result: dict = {"apps": apps}
    with Platform(daemons=True) as platform:
        time.sleep(QUIET_S)
        result["before"] = footprint_median(platform)

        from berth.apps.services import app_create  # Django is set up by now

        sources = {}
        for n in range(apps):
            name = f"{platform.app.name}-{n}"
            app_create(team=platform.team, name=name, actor=platform.user)
            sources[name] = platform.source(name)
            sources[name].commit(f"idle footprint {n}")
        pushes: dict[str, subprocess.CompletedProcess] = {}

        def push(name: str) -> None:
            pushes[name] = sources[name].git("push", "berth", "main", check=False, timeout=300)

        threads = [threading.Thread(target=push, args=(name,)) for name in sources]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        peak = footprint(platform)
        while any(thread.is_alive() for thread in threads) and time.monotonic() - started < 330:
            now = footprint(platform)
            if now["worker"]["processes"] > peak["worker"]["processes"]:
                peak = now
            time.sleep(0.5)
        for thread in threads:
            thread.join(5)
        failed = [name for name in sources if pushes.get(name) is None or pushes[name].returncode != 0]
        if failed:
            platform.failed = True
            print(f"pushes failed: {failed}", file=sys.stderr)
            for name in failed:
                print(pushes[name].stderr[-2000:] if name in pushes else "(no answer)", file=sys.stderr)
            return 1
        result["pushes_s"] = round(time.monotonic() - started, 1)
        result["while_pushing"] = peak
        samples = []
        quiet_from = time.monotonic()
        while time.monotonic() - quiet_from < idle_s:
            time.sleep(10)
            samples.append({"after_s": round(time.monotonic() - quiet_from), **footprint(platform)})
        result["after"] = samples
        result["after_median"] = footprint_median(platform)

    names = list(result["before"])
    last = {"after_s": round(idle_s + SAMPLES * SAMPLE_EVERY_S), **result["after_median"]}
    rows = [
        [
            name,
            result["before"][name]["pss_mb"],
            peak[name]["pss_mb"],
            peak[name]["processes"],
            last[name]["pss_mb"],
            last[name]["processes"],
        ]
        for name in names
    ]
    totals = {key: sum(row[i] for row in rows) for key, i in (("before", 1), ("peak", 2), ("after", 4))}
    rows.append(
        ["all", round(totals["before"], 1), round(totals["peak"], 1), "", round(totals["after"], 1), ""]
    )
    print_table(
        f"Berth's processes, PSS MB (idle: median of {SAMPLES} samples {SAMPLE_EVERY_S:.0f} s apart): idle; while"
        f" {apps} pushes run (peak pool); {idle_s:.0f} s after the last is live",
        ["process", "idle", "pushing", "procs", f"idle after {last['after_s']} s", "procs"],
        rows,
    )
    print(
        "worker's processes every 10 s after the pushes:", [s["worker"]["processes"] for s in result["after"]]
    )
    print(
        "worker's processes seen in the idle samples: before the pushes",
        result["before"]["worker"]["processes_seen"],
        "after",
        result["after_median"]["worker"]["processes_seen"],
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idle_footprint.json").write_text(json.dumps(result, indent=2) + "\n")
    save_figures(
        "idle_footprint",
        [
            figure(
                "Berth's processes idle, PSS (no registry)",
                [totals["before"]],
                "MB",
                goal=f"≤ {GOAL_MB} MB",
                note=", ".join(f"{row[0]} {row[1]}" for row in rows[:-1]),
                limit=GOAL_MB,
            ),
            figure(
                f"  the same {idle_s:.0f} s after {apps} pushes",
                [totals["after"]],
                "MB",
                goal=f"≤ {GOAL_MB} MB",
                note=f"worker {last['worker']['pss_mb']} MB in {last['worker']['processes']} processes",
                limit=GOAL_MB,
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
