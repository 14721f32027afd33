"""Health of what Berth depends on: database, Redis, Docker, swarm, router. Used by /healthz and `doctor`.

It sits in berth.observe, above the container engine and the router it asks, so the ground floor (berth.core)
depends on neither.
"""

from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection

from berth.routing.haproxy import admin_command
from berth.runtime.stats import engine_ping, swarm_membership


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    client.ping()
    return "ok"


def _docker() -> str:
    engine_ping(timeout=5)
    return "ok"


def _swarm() -> str:
    swarm = swarm_membership(timeout=5)
    if swarm.state != "active":
        raise RuntimeError(f"this node is not in a swarm (state: {swarm.state})")
    if not swarm.manager:
        raise RuntimeError("this node is not a swarm manager")
    return "ok"


def _router() -> str:
    answer = admin_command("show info")
    if "Name: HAProxy" not in answer:
        raise RuntimeError(f"unexpected answer from the router's admin socket: {answer[:80]!r}")
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "redis": _redis,
    "docker": _docker,
    "swarm": _swarm,
    "router": _router,
}


def check_health() -> dict[str, str]:
    """Each dependency mapped to "ok" or a one-line reason it is not."""
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # any failure is a reason to report, not to crash the health page
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            results[name] = f"error: {reason}"
    return results
