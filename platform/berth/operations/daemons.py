"""Berth's singleton loops in one process (deploy/Procfile's `daemons`): the service-discovery watcher, the log
shipper with its metrics sampler and companions (the log drains' forwarder), and beat's clock.

Each was a process of its own: the watcher and the shipper ~96 MB PSS each (a Django process), beat 42 MB (issue 17:
Berth's idle footprint). They share one Django now (~100 MB for the three). They stay singletons as before: an
upgrade stops the old process, then starts the new one (deploy/processes.sh), and each loop picks up again from
Docker, Redis and the database (the shipper from its cursors, beat from its schedule file). A loop that ends on its
own ends the process with it (its supervisor, respawn.sh or systemd's Restart=always, starts it again), as it did
when each loop was its process: nothing runs on half its loops unseen.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from celery import current_app
from celery.beat import EmbeddedService

from berth.discovery.services import watch
from berth.observe.metrics import SAMPLE_INTERVAL, Sampler, router_traffic
from berth.observe.shipper import COMPANIONS, SCAN_INTERVAL, Shipper

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # how often the loops' threads are looked at
STOP_TIMEOUT = 10.0


def daemons_run(
    *,
    stop: threading.Event,
    schedule_path: Path,
    scan_interval: float = SCAN_INTERVAL,
    sample_interval: float = SAMPLE_INTERVAL,
    only_labels: dict[str, str] | None = None,
    say: Callable[[str], None] = logger.info,
) -> list[str]:
    """Run the watcher, the shipper (its sampler and companions) and beat until `stop` is set or one of the loops
    ends on its own; stop them all and return the names of the loops that ended on their own (none: a clean stop).
    `only_labels` narrows the containers whose logs are shipped (tests and benchmarks on a shared engine)."""
    shipper = Shipper(only_labels=only_labels).start(scan_interval=scan_interval)
    say(f"shipper: following app containers on node {shipper.node}")
    sampler = Sampler(interval=sample_interval, traffic=router_traffic()).start()
    companions = [start() for start in COMPANIONS]
    # beat's clock as a thread (Celery's embedded service wakes every second, to stop within one)
    beat = EmbeddedService(
        current_app._get_current_object(), thread=True, schedule_filename=str(schedule_path)
    )
    beat.name = "beat"
    beat.start()
    say(f"beat: sending the schedule's tasks (schedule file {schedule_path})")
    watcher = threading.Thread(target=watch, kwargs={"stop": stop}, name="watcher", daemon=True)
    watcher.start()
    say("watcher: following Docker events; full reconcile every few seconds")
    ended: list[str] = []
    while not stop.wait(CHECK_INTERVAL):
        ended = [thread.name for thread in (watcher, beat) if not thread.is_alive()]
        if ended:
            logger.error("%s ended on its own: stopping the other loops (the process ends with them)", ended)
            break
    stop.set()
    if beat.is_alive():
        beat.stop()
    watcher.join(STOP_TIMEOUT)
    for companion_stop in companions:
        companion_stop()
    sampler.stop(STOP_TIMEOUT)
    shipper.stop(STOP_TIMEOUT)
    return ended
