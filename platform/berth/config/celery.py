import os
import time

from celery import Celery
from celery.worker import state
from celery.worker.autoscale import Autoscaler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")

app = Celery("berth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


SCHEDULED_LONG_S = 2.0  # a scheduled task running this long holds its process like any task


class PoolAutoscaler(Autoscaler):
    """Celery's autoscaler (`--autoscale max,min`), whose grown pool shrinks back `keepalive` seconds after it
    last had to grow, whatever small tasks keep arriving.

    Celery's own shrinks only after `keepalive` seconds without any task received: Berth's beat sends one every
    15 s (the cron tick), so a pool grown to ten processes by ten pushes at once kept them, idle, for good (five
    forks, 427 MB PSS, two minutes after one push on a `make up` install)."""

    def on_task_received(self, req) -> None:
        pass  # the pool's clock is its last growth (Autoscaler.scale_down): a task that fits does not reset it

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
