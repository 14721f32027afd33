"""The worker's pool autoscaler (deploy/Procfile's `--autoscale 10,0`; settings.CELERY_WORKER_AUTOSCALER names it).

A module of its own, loaded by a worker only: beat and the other processes import berth.config (and so the Celery
app) without it and what it reads (berth.deploys.retiring)."""

import time

from celery.worker import autoscale, state
from celery.worker.autoscale import Autoscaler

from berth.config.celery import app
from berth.deploys.retiring import retirements_pending

SCHEDULED_LONG_S = 2.0  # a scheduled task running this long holds its process like any task
LAST_PROCESS_IDLE_S = 2.0  # `--autoscale N,0`: the last process ends once the pool is idle this long
BUSY_LOOK_S = 1.0  # how often a busy pool is looked at (to see it idle soon after its work ends)


class PoolAutoscaler(Autoscaler):
    """Celery's autoscaler (`--autoscale max,min`), whose grown pool shrinks back `keepalive` seconds after it
    last had to grow, whatever small tasks keep arriving.

    Celery's own shrinks only after `keepalive` seconds without any task received: Berth's beat sends one every
    15 s (the cron tick), so a pool grown to ten processes by ten pushes at once kept them, idle, for good (five
    forks, 427 MB PSS, two minutes after one push on a `make up` install)."""

    _idle_since: float | None = None  # when a look first found the pool idle (None: busy, or not looked yet)
    _look_pending = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hub = getattr(self.worker, "hub", None)
        if hub is not None:
            hub.on_tick.add(self._on_tick)

    def on_task_received(self, req) -> None:
        pass  # the pool's clock is its last growth (Autoscaler.scale_down): a task that fits does not reset it

    def _on_tick(self) -> None:
        """A task reserved without a message arriving (a countdown or ETA come due, a rate limit's turn) calls no
        look: with no process it would wait for the next message (beat's tick, 15 s) or Celery's 30 s look."""
        if self.processes == 0 and state.reserved_requests:
            self.maybe_scale()

    def _maybe_scale(self, req=None):
        if self.qty:
            self._idle_since = None
            self._look_again(BUSY_LOOK_S)
        elif self.processes:
            now = autoscale.monotonic()
            if self._idle_since is None:
                self._idle_since = now
            # however this look came (a look asked for while busy, a task's message, Celery's own): one more is
            # due when the last process may end
            left = LAST_PROCESS_IDLE_S - (now - self._idle_since)
            if left > 0:
                self._look_again(left + 0.1)
        return super()._maybe_scale(req)

    def _look_again(self, delay: float) -> None:
        """With the worker's event loop Celery looks at the pool only when a task arrives and every `keepalive`
        (30 s): beat's ticks, every 15 s, fell on those looks and kept the last process for good. A busy pool is
        looked at again every BUSY_LOOK_S, an idle one once more when its last process may end."""
        hub = getattr(self.worker, "hub", None)
        if hub is None or self._look_pending:
            return  # no event loop: Celery's own thread looks every second
        self._look_pending = True

        def look() -> None:
            self._look_pending = False
            self.maybe_scale()

        hub.call_later(delay, look)

    def _grow(self, n: int) -> None:
        if self.processes == 0 and n == 1:  # the idle worker's first process: at every tick, not worth a line
            self.pool.grow(1)
        else:
            super()._grow(n)

    def _shrink(self, n: int) -> None:
        if retirements_pending():
            # a deploy's replaced releases are being removed by a thread of one of the pool's processes
            # (berth.deploys.retiring), which billiard would end with it: the removal and its event then waited
            # for the sweep, a minute or more. Looked at again until it is done.
            self._look_again(BUSY_LOOK_S)
            return
        if self.processes == 1 and n == 1:
            try:
                self.pool.shrink(1)
            except (
                ValueError
            ):  # billiard still counts it busy (its last result not yet read): look again soon
                self._look_again(BUSY_LOOK_S)
        else:
            super()._shrink(n)

    def scale_down(self, n: int):
        """Celery's rule for the processes a burst of work grew; the last one (`--autoscale N,0`, as deploy/Procfile
        runs the worker) ends once the pool has been seen idle for LAST_PROCESS_IDLE_S (a deploy queued just after its
        build finds it still there). An idle worker is then its main
        process alone (~100 MB PSS), which forks a process the moment a task arrives (~50 ms, from the loaded
        Django); the pool process it kept for good was ~65 MB more (issue 17: the idle footprint). Beat's tick every
        15 s gets a process for ~3 s."""
        if n < self.processes:
            return super().scale_down(n)
        if n > 1:
            return super().scale_down(n - 1)  # down to one first: the burst's processes by Celery's rule
        if self._idle_since is not None and autoscale.monotonic() - self._idle_since >= LAST_PROCESS_IDLE_S:
            return self._shrink(1)
        return None

    @property
    def qty(self) -> int:
        """The processes the tasks held want: one each, except beat's scheduled tasks (sweeps and ticks of a few
        milliseconds) that wait or have just started, which want one between them all. Several fall due at the
        same second (every 15, 30, 60 s...), and each grew the pool by a fork of ~50 MB PSS kept 30 s, for work
        one process does in a blink (measured: the idle worker at 4-6 processes, 251-386 MB, 30 s after start).
        One that has run for SCHEDULED_LONG_S counts alone: the ticks behind a long backup get a process."""
        scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
        now = time.time()  # a request's time_start is the wall clock's
        held = list(state.reserved_requests)
        quick = sum(
            1
            for request in held
            if request.name in scheduled
            and (request.time_start is None or now - request.time_start < SCHEDULED_LONG_S)
        )
        return len(held) - quick + min(quick, 1)
