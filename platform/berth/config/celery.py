import os
import time

from celery import Celery
from celery.worker import autoscale, state
from celery.worker.autoscale import Autoscaler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")

app = Celery("berth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


SCHEDULED_LONG_S = 2.0  # a scheduled task running this long holds its process like any task
LAST_PROCESS_IDLE_S = 2.0  # `--autoscale N,0`: the last process ends once the pool is idle this long


class PoolAutoscaler(Autoscaler):
    """Celery's autoscaler (`--autoscale max,min`), whose grown pool shrinks back `keepalive` seconds after it
    last had to grow, whatever small tasks keep arriving.

    Celery's own shrinks only after `keepalive` seconds without any task received: Berth's beat sends one every
    15 s (the cron tick), so a pool grown to ten processes by ten pushes at once kept them, idle, for good (five
    forks, 427 MB PSS, two minutes after one push on a `make up` install)."""

    _last_busy: float | None = None

    def on_task_received(self, req) -> None:
        pass  # the pool's clock is its last growth (Autoscaler.scale_down): a task that fits does not reset it

    _check_pending = False

    def _maybe_scale(self, req=None):
        if self.qty:
            self._last_busy = autoscale.monotonic()
            self._look_again_soon()
        return super()._maybe_scale(req)

    def _look_again_soon(self) -> None:
        """With the worker's event loop Celery looks at the pool only when a task arrives and every `keepalive`
        (30 s): beat's ticks, every 15 s, fell on those looks and kept the last process for good. While the pool is
        busy it is looked at again just after LAST_PROCESS_IDLE_S."""
        hub = getattr(self.worker, "hub", None)
        if hub is None or self._check_pending:
            return  # no event loop: Celery's own thread looks every second
        self._check_pending = True

        def look() -> None:
            self._check_pending = False
            self.maybe_scale()

        hub.call_later(LAST_PROCESS_IDLE_S + 0.5, look)

    def _grow(self, n: int) -> None:
        if self.processes == 0 and n == 1:  # the idle worker's first process: at every tick, not worth a line
            self.pool.grow(1)
        else:
            super()._grow(n)

    def _shrink(self, n: int) -> None:
        if self.processes == 1 and n == 1:
            try:
                self.pool.shrink(1)
            except ValueError:
                pass  # busy after all: looked at again later
        else:
            super()._shrink(n)

    def scale_down(self, n: int):
        """Celery's rule for the processes a burst of work grew; the last one (`--autoscale N,0`, as deploy/Procfile
        runs the worker) ends LAST_PROCESS_IDLE_S after the pool was last busy. An idle worker is then its main
        process alone (~100 MB PSS), which forks a process the moment a task arrives (~50 ms, from the loaded
        Django); the pool process it kept for good was ~65 MB more (issue 17: the idle footprint). Beat's tick every
        15 s gets a process for ~3 s."""
        if n < self.processes:
            return super().scale_down(n)
        if n > 1:
            return super().scale_down(n - 1)  # down to one first: the burst's processes by Celery's rule
        if self._last_busy is None or autoscale.monotonic() - self._last_busy > LAST_PROCESS_IDLE_S:
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
