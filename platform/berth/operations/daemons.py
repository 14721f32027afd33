"""Berth's singleton loops in one process (deploy/Procfile's `daemons`): the service-discovery watcher, the log
shipper with its metrics sampler and companions (the log drains' forwarder), and beat's clock.

Each was a process of its own: the watcher and the shipper ~96 MB PSS each (a Django process), beat 42 MB (issue 17:
Berth's idle footprint). They share one Django now (~100 MB for the three). They stay singletons as before: an
upgrade stops the old process, then starts the new one (deploy/processes.sh), and each loop picks up again from
Docker, Redis and the database (the shipper from its cursors, beat from its schedule file). If the watcher's or
beat's thread ends on its own, the process ends with it (its supervisor, respawn.sh or systemd's Restart=always,
starts it again), as it did when each was its process: nothing runs on half its loops unseen. (The shipper's,
sampler's and forwarder's loops catch their errors and go on, as they did in `ship_logs`.)
"""

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from celery import current_app
from celery.beat import EmbeddedService

from berth.discovery.services import watch
from berth.observe.metrics import SAMPLE_INTERVAL, Sampler, router_traffic
from berth.observe.shipper import COMPANIONS, SCAN_INTERVAL, Shipper

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # how often the loops' threads are looked at
STOP_TIMEOUT = 30.0  # all loops together (systemd's TimeoutStopSec and make up's wait are 40 s)


@contextmanager
def singleton_lock(
    path: Path, *, stop: threading.Event, say: Callable[[str], None]
) -> Iterator[IO[bytes] | None]:
    """Hold an exclusive lock on `path` while the block runs; while another process holds it, wait (looking again
    every second) until it is free or `stop` is set (then the block gets None and should return at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    say(f"daemons: another daemons process holds {path}: waiting for it to end")
                    said = True
                if stop.wait(CHECK_INTERVAL):
                    yield None
                    return
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def daemons_run(
    *,
    stop: threading.Event,
    schedule_path: Path,
    lock_path: Path,
    scan_interval: float = SCAN_INTERVAL,
    sample_interval: float = SAMPLE_INTERVAL,
    only_labels: dict[str, str] | None = None,
    say: Callable[[str], None] = logger.info,
) -> list[str]:
    """Run the watcher, the shipper (its sampler and companions) and beat until `stop` is set or one of the loops
    ends on its own; stop them all and return the names of the loops that ended on their own (none: a clean stop).
    `lock_path` makes the process the only one running them; `only_labels` narrows the containers whose logs are
    shipped (tests and benchmarks on a shared engine)."""
    with singleton_lock(lock_path, stop=stop, say=say) as held:
        if held is None:
            return []
        return _run(stop, schedule_path, scan_interval, sample_interval, only_labels, say)


def _run(
    stop: threading.Event,
    schedule_path: Path,
    scan_interval: float,
    sample_interval: float,
    only_labels: dict[str, str] | None,
    say: Callable[[str], None],
) -> list[str]:
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
    _stop_all(stop, watcher, beat, [*companions, sampler.stop, shipper.stop])
    return ended


def _stop_all(
    stop: threading.Event, watcher: threading.Thread, beat: threading.Thread, stops: list[Callable[[], None]]
) -> None:
    """Tell every loop to stop at once, then wait for them all within one STOP_TIMEOUT: beat may be retrying a send
    while Redis is away, and Celery's own stop would wait for it for ever. What has not ended by then is left to the
    process's exit (every thread is a daemon)."""
    deadline = time.monotonic() + STOP_TIMEOUT
    stop.set()
    beat.service.stop()  # without waiting
    stoppers = [threading.Thread(target=one, name="stopping", daemon=True) for one in stops]
    for stopper in stoppers:
        stopper.start()
    for thread in (watcher, beat, *stoppers):
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [thread.name for thread in (watcher, beat) if thread.is_alive()]
    left += ["a shipper, sampler or companion loop"] if any(s.is_alive() for s in stoppers) else []
    if left:
        logger.warning("still running after %.0f s, left to the process's exit: %s", STOP_TIMEOUT, left)
