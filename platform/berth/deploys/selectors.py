"""Reads of deploys: the live release, an app's hostnames and its running processes."""

import logging

from berth.apps.models import App
from berth.releases.models import Release, ReleaseStatus
from berth.runtime.scheduler import get_scheduler

logger = logging.getLogger(__name__)


def live_release(app: App) -> Release | None:
    return Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()


def app_processes(*, app: App) -> list[dict]:
    """What runs for the app, one row per task (`berth ps`)."""
    rows = []
    for task in get_scheduler().tasks(app=app.name):
        rows.append(
            {
                "id": task.id,
                "process": task.process,
                "release": task.release,
                "state": task.state,
                "desired_state": task.desired_state,
                "node": task.node_id,
                "address": task.node_address,
                "port": task.published_port,
                "started_at": task.started_at,
                "restarts": task.restarts,
                "error": task.error,
            }
        )
    return rows
