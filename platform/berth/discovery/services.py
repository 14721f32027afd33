"""Service discovery: follow Docker's container events for Berth's apps and keep the router in step.

As in the seed's etcd+confd (or Marathon+HAProxy) pattern: the swarm is the registry of what runs and where
(task → node address : published port); the watcher turns each change into a reconcile of that app's routes, and
a periodic full reconcile heals missed events and a router restarted from nothing.
"""

import logging
import queue
import threading
import time

from django.db import close_old_connections

from berth.apps.models import App
from berth.deploys.rollout import app_reconcile, apps_out_of_step
from berth.nodes.services import node_states_follow
from berth.releases.models import ReleaseStatus
from berth.runtime.events import container_events, engine_unreachable
from berth.runtime.scheduler import LABEL_APP

logger = logging.getLogger("berth.watcher")

FULL_RECONCILE_SECONDS = 3.0  # also how soon a router restarted from nothing has its routes back
DEBOUNCE_SECONDS = 0.2
SLOW_RECONCILE_SECONDS = 2.0
# What makes a change of an app's container worth a reconcile of its routes.
ROUTE_ACTIONS = {"start", "die", "stop", "kill", "destroy", "health_status"}


def reconcile_apps(names: set[str] | None = None) -> set[str]:
    """Reconcile the routes of the named apps (all apps with a live release when None).

    Returns the apps with a running task that did not answer HTTP yet (not routed): to be reconciled again soon.
    """
    apps = App.objects.select_related("team").filter(releases__status=ReleaseStatus.LIVE).distinct()
    if names is not None:
        apps = apps.filter(name__in=names)
    else:
        try:
            apps = apps_out_of_step(list(apps))  # every app: only those not in step are reconciled one by one
        except Exception as exc:
            if engine_unreachable(exc):
                logger.warning("reconcile skipped: the Docker engine is unreachable (%s)", exc)
                return set()
            # the comparison failing must not stop the healing: every app, one by one, as a deploy does
            logger.exception("comparing every app's routes with what runs failed; reconciling each")
    waiting = set()
    for app in apps:
        started = time.monotonic()
        try:
            if app_reconcile(app):
                waiting.add(app.name)
        except Exception as exc:  # one app's trouble must not stop the others' routes
            # the engine is restarting: one line per round, not a traceback per app
            if engine_unreachable(exc):
                logger.warning("reconcile skipped: the Docker engine is unreachable (%s)", exc)
                break
            logger.exception("reconcile of %s failed", app.name)
        took = time.monotonic() - started
        if took > SLOW_RECONCILE_SECONDS:  # every other app's routes waited this long: worth knowing
            logger.warning("reconcile of %s took %.1fs", app.name, took)
    return waiting


def _follow_events(changed: "queue.Queue[str]", stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for event in container_events(labels=LABEL_APP):
                app = event.attributes.get(LABEL_APP)
                if app and event.action in ROUTE_ACTIONS:
                    changed.put(app)
                if stop.is_set():
                    return
        except Exception as exc:  # the engine restarted: follow again after a pause, reconcile heals the gap
            logger.warning("lost Docker events (%s); following again", exc)
            time.sleep(1)


def watch(*, stop: threading.Event | None = None, full_every: float = FULL_RECONCILE_SECONDS) -> None:
    """Run until `stop` is set: reconcile apps whose containers changed, and all apps every `full_every` s."""
    stop = stop or threading.Event()
    changed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_follow_events, args=(changed, stop), daemon=True, name="docker-events").start()
    last_full = 0.0
    waiting: set[str] = set()
    node_states: dict[str, str] | None = None
    while not stop.is_set():
        names: set[str] = set(waiting)  # tasks that were not answering yet: look again (about every second)
        try:
            names.add(changed.get(timeout=1.0))
            time.sleep(DEBOUNCE_SECONDS)  # a deploy changes many containers at once: one reconcile for all
            while True:
                names.add(changed.get_nowait())
        except queue.Empty:
            pass
        close_old_connections()
        if time.monotonic() - last_full >= full_every:
            waiting = reconcile_apps()
            node_states = _follow_nodes(node_states)
            last_full = time.monotonic()
        elif names:
            waiting = reconcile_apps(names)


def _follow_nodes(previous: dict[str, str] | None) -> dict[str, str] | None:
    """Record node.down / node.up events for the apps with tasks on a node whose state changed."""
    try:
        return node_states_follow(previous=previous)
    except Exception:  # the engine may be restarting: look again next time
        logger.exception("following node states failed")
        return previous
