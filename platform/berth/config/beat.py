"""The Celery app beat runs (deploy/Procfile): Berth's Celery settings — the schedule, the broker, the task routes —
without Django's apps.

Beat is a clock: it sends the schedule's tasks by name and runs none. Through the worker's app (berth.config.celery)
it loaded every Django app and task module, as a worker must, and was a 105 MB process for it (issue 17's idle
footprint). Celery's Django fixup, which would set Django up, is left out; the settings module is all it reads.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")

app = Celery("berth", fixups=[])
app.config_from_object("django.conf:settings", namespace="CELERY")
