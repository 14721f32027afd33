import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
# The worker starts without Django's system checks (celery's Django fix-up runs them unless this is set), as the
# daemons do (berth.core.management.daemon): `migrate`, which `make up` runs before it starts the worker, ran them;
# here their URL check imported every view, ~12 % of the worker's start-up CPU, in a process that serves none.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("berth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
