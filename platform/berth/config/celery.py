import os

from celery import Celery
from celery.worker.autoscale import Autoscaler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")

app = Celery("berth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class PoolAutoscaler(Autoscaler):
    """Celery's autoscaler (`--autoscale max,min`), whose grown pool shrinks back `keepalive` seconds after it
    last had to grow, whatever small tasks keep arriving.

    Celery's own shrinks only after `keepalive` seconds without any task received: Berth's beat sends one every
    15 s (the cron tick), so a pool grown to ten processes by ten pushes at once kept them, idle, for good (five
    forks, 427 MB PSS, two minutes after one push on a `make up` install)."""

    def on_task_received(self, req) -> None:
        pass  # the pool's clock is its last growth (Autoscaler.scale_down): a task that fits does not reset it
