"""Benchmark: how long a web process takes from the scheduler's ensure_process to every replica answering HTTP on
its port, with 1 and with 3 replicas, on the real Swarm.

    .venv/bin/python bench/process_ready.py [--rounds 3] [--settle 0]

Uses the stack image (berth/stack:bookworm) and `python3 -m http.server $PORT`; everything it makes is labelled
org.berth.test=1 and removed at the end. Prints one line per replica count and writes
bench/results/process_ready.figures.json.
"""

import argparse
import atexit
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
os.environ.setdefault("BERTH_SECRET_KEY", "bench")
if "BERTH_HOME" not in os.environ:
    os.environ["BERTH_HOME"] = tempfile.mkdtemp(prefix="berth-bench-home-")
    atexit.register(shutil.rmtree, os.environ["BERTH_HOME"], True)

import django  # noqa: E402

django.setup()  # the scheduler reads Docker's address and the registry from the settings

from berth.runtime.health import http_ready  # noqa: E402
from berth.runtime.scheduler import ProcessSpec  # noqa: E402
from berth.runtime.swarm import SwarmScheduler, team_network_remove  # noqa: E402
from common import figure, save_figures  # noqa: E402

LABELS = {"org.berth.test": "1", "org.berth.test.suite": "runtime-bench"}


def time_to_ready(
    scheduler: SwarmScheduler, *, team: str, replicas: int, settle: float
) -> tuple[float, float]:
    """Seconds until wait_running returned, and until every replica answered HTTP."""
    app = f"bench-{secrets.token_hex(3)}"
    spec = ProcessSpec(
        app=app,
        team=team,
        release=1,
        process="web",
        image="berth/stack:bookworm",
        command="python3 -m http.server $PORT",
        env={},
        replicas=replicas,
    )
    started = time.monotonic()
    try:
        scheduler.ensure_process(spec)
        tasks = scheduler.wait_running(
            app=app, release=1, process="web", replicas=replicas, timeout=60, settle=settle
        )
        running = time.monotonic() - started
        for task in tasks:
            if not http_ready(task.node_address, task.published_port, timeout=30, interval=0.05):
                raise RuntimeError(f"{task.service} slot {task.slot} never answered")
        return running, time.monotonic() - started
    finally:
        scheduler.remove(app=app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per replica count")
    parser.add_argument("--settle", type=float, default=0.0, help="wait_running's settle time, in seconds")
    args = parser.parse_args()
    scheduler = SwarmScheduler(extra_labels=LABELS)
    team = f"bench{secrets.token_hex(2)}"
    figures = []
    try:
        for replicas in (1, 3):
            results = [
                time_to_ready(scheduler, team=team, replicas=replicas, settle=args.settle)
                for _ in range(args.rounds)
            ]
            running = statistics.median(r[0] for r in results)
            ready = statistics.median(r[1] for r in results)
            print(
                f"replicas={replicas}: running with port {running:.2f}s, all answering HTTP {ready:.2f}s "
                f"(median of {args.rounds}; each: {', '.join(f'{r[1]:.2f}' for r in results)})",
                flush=True,
            )
            figures.append(
                figure(f"{replicas} replica(s): running with a port", [r[0] for r in results], "s")
            )
            figures.append(figure(f"{replicas} replica(s): all answering HTTP", [r[1] for r in results], "s"))
    finally:
        team_network_remove(team=team)
    save_figures("process_ready", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
