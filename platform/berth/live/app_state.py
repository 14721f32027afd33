"""The app page's state in one JSON-able snapshot: releases with their statuses, the current version, what runs
(`berth ps`), the formation and the latest builds, read together so the page never shows two versions at once.

The app page (static/berth/app.js) renders its header, Releases, Processes, Formation and Recent builds from it;
berth.live.consumers.AppStateConsumer sends it on connect and again whenever it changes. This module only reads.
"""

import logging
import time

from django.urls import reverse

from berth.apps.models import App
from berth.apps.selectors import formation_for_app
from berth.builds.models import Build
from berth.builds.procfile import RELEASE_PROCESS
from berth.deploys.selectors import app_processes
from berth.nodes.selectors import process_rows_visible_to
from berth.releases.models import ReleaseStatus
from berth.releases.selectors import releases_for_app

logger = logging.getLogger(__name__)

RELEASES_SHOWN = 30  # as the page's server render (berth.dashboard.views.RELEASES_SHOWN)
BUILDS_SHOWN = 10  # as berth.dashboard.selectors.builds_for_app
# Serving, or being rolled out right now: never a rollback target (app.html's server render says the same).
NOT_ROLLBACK_TARGETS = (ReleaseStatus.LIVE, ReleaseStatus.DEPLOYING)
# What a process row says, as `berth ps` (the API's /ps) does; the node's address only for who may see nodes.
# A service removed while its tasks are listed (a scale down, a retirement) fails the listing for a moment: once
# more before the page says the processes cannot be listed (and shows none).
ENGINE_ATTEMPTS = 2
ENGINE_RETRY_SECONDS = 0.1
PROCESS_FIELDS = (
    "id",
    "process",
    "release",
    "state",
    "desired_state",
    "node",
    "address",
    "restarts",
    "error",
)


def release_can_roll_back_to(*, status: str, has_image: bool) -> bool:
    """Whether the page offers "Roll back" to a release: it has an image and neither serves nor is rolling out."""
    return has_image and status not in NOT_ROLLBACK_TARGETS


def _release_rows(app: App) -> list[dict]:
    return [
        {
            "version": release.version,
            "status": release.status,
            "description": release.description,
            "image": release.image,
            "by": release.created_by.get_username() if release.created_by else "berth",
            "created_at": release.created_at.isoformat(),
            "can_roll_back": release_can_roll_back_to(status=release.status, has_image=bool(release.image)),
        }
        for release in releases_for_app(app=app)[:RELEASES_SHOWN]
    ]


def _build_rows(app: App) -> list[dict]:
    builds = Build.objects.filter(app=app).select_related("release").order_by("-id")[:BUILDS_SHOWN]
    return [
        {
            "id": build.pk,
            "status": build.status,
            "source": build.source,
            "ref": build.image_ref if build.source == "image" else (build.git_sha or "")[:7],
            "release": build.release.version if build.release else None,
            "created_at": build.created_at.isoformat(),
            "url": reverse("dashboard:build", args=[app.name, build.pk]),
        }
        for build in builds
    ]


def _formation_rows(app: App) -> list[dict]:
    # The Procfile's `release` phase runs once per deploy (berth.deploys.rollout._release_phase): nothing to scale.
    return [
        {
            "process": row.process,
            "replicas": row.replicas,
            "memory_mb": row.memory_mb,
            "cpu": float(row.cpu) if row.cpu is not None else None,
        }
        for row in formation_for_app(app=app)
        if row.process != RELEASE_PROCESS
    ]


def _process_rows(app: App, user) -> tuple[list[dict], str | None]:
    for attempt in range(ENGINE_ATTEMPTS):
        try:
            rows = process_rows_visible_to(user=user, rows=app_processes(app=app))
            break
        except Exception as exc:  # noqa: BLE001 - the rest of the state still renders when the engine is down
            if attempt + 1 < ENGINE_ATTEMPTS:
                time.sleep(ENGINE_RETRY_SECONDS)
                continue
            logger.warning("processes of %s unavailable: %s", app.name, exc)
            return [], f"cannot list processes right now ({type(exc).__name__})"
    rows = [{field: row.get(field) for field in PROCESS_FIELDS} for row in rows]
    rows.sort(key=lambda r: (r["process"] or "", -(r["release"] or 0), r["id"] or ""))
    return rows, None


def app_live_state(*, app: App, user) -> dict:
    """The app page's state now (see the module's docstring), as `user` may see it.

    `settled` is False only in the moment between a roll-out superseding the old release and marking the new one
    live (two updates: berth.deploys.rollout.release_deploy): no release live, one deploying, an older one just
    superseded. The consumer waits that out so the page switches both badges in one transition.
    """
    # The engine first: its tasks change while the rows are read, and a row newer than the tasks is the safer
    # mistake (a release says "live" a moment before its task row says running, never the reverse).
    processes, processes_error = _process_rows(app, user)
    releases = _release_rows(app)  # one query: the statuses are those of one moment
    formation = _formation_rows(app)
    builds = _build_rows(app)
    live = next((r["version"] for r in releases if r["status"] == ReleaseStatus.LIVE), None)
    deploying = any(r["status"] == ReleaseStatus.DEPLOYING for r in releases)
    superseded = any(r["status"] == ReleaseStatus.SUPERSEDED for r in releases)
    return {
        "type": "state",
        "app": app.name,
        "live_version": live,
        "current_version": live if live is not None else (releases[0]["version"] if releases else None),
        "releases": releases,
        "processes": processes,
        "processes_error": processes_error,
        "formation": formation,
        "builds": builds,
        "settled": not (live is None and deploying and superseded),
    }
