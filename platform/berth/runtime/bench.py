"""Measure how long a web process takes from ensure_process to every replica answering HTTP on its port.

    .venv/bin/python manage.py shell -c "from berth.runtime.bench import main; main()"

Uses the stack image and `python3 -m http.server $PORT`; everything it makes is labelled org.berth.test=1 and
removed at the end.
"""

import secrets
import statistics
import time

from berth.runtime.health import http_ready
from berth.runtime.scheduler import ProcessSpec
from berth.runtime.swarm import SwarmScheduler, team_network_remove

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


def main(rounds: int = 3, settle: float = 0.0) -> None:
    scheduler = SwarmScheduler(extra_labels=LABELS)
    team = f"bench{secrets.token_hex(2)}"
    try:
        for replicas in (1, 3):
            results = [
                time_to_ready(scheduler, team=team, replicas=replicas, settle=settle) for _ in range(rounds)
            ]
            running = statistics.median(r[0] for r in results)
            ready = statistics.median(r[1] for r in results)
            print(
                f"replicas={replicas}: running with port {running:.2f}s, all answering HTTP {ready:.2f}s "
                f"(median of {rounds}; each: {', '.join(f'{r[1]:.2f}' for r in results)})"
            )
    finally:
        team_network_remove(team=team)
