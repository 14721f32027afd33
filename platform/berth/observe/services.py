"""Writes of the observe pipeline: app log lines, platform events and retention of both, in Redis streams.

An app's log is the stream `berth:logs:<app>`; each entry has the fields ts (ISO 8601, when the line was printed),
process, instance (`web.1`), stream (stdout, stderr, platform, or gap for a hole the shipper could not fill) and
line. Platform events go to `berth:events:<app>` (ts, kind, message) and, as a `platform` line, into the app's log,
so `berth logs` shows "release v3 live" between the app's own lines.
"""

import logging
import time
from datetime import UTC, datetime

import redis

from berth.core.env import env_int
from berth.core.redis import redis_client
from berth.observe.history import history_delete
from berth.observe.signals import event_recorded

LOG_FIELDS = ("ts", "process", "instance", "stream", "line")
PLATFORM_PROCESS = "berth"
logger = logging.getLogger(__name__)

EVENTS_MAX = 1000  # events are rare; the newest thousand are plenty for a dashboard and `berth events`


def logs_key(app: str) -> str:
    return f"berth:logs:{app}"


def events_key(app: str) -> str:
    return f"berth:events:{app}"


def health_key(app: str) -> str:
    """The app's health samples (written by berth.observe.metrics)."""
    return f"berth:health:{app}"


def app_streams_delete(*, app: str) -> None:
    """Forget a destroyed app's logs, events, health samples and metrics history."""
    redis_client().delete(logs_key(app), events_key(app), health_key(app))
    history_delete(app=app)


# Read at call time, not import time, so a changed environment (and a test) takes effect without a restart.
def retention_lines() -> int:
    return env_int("BERTH_LOG_RETENTION_LINES", 10_000, minimum=1)


def retention_days() -> int:
    return env_int("BERTH_LOG_RETENTION_DAYS", 7, minimum=1)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def log_entries_append(
    *, app: str, entries: list[dict[str, str]], client: redis.Redis | None = None
) -> list[str]:
    """Append log entries (dicts with LOG_FIELDS) to the app's log; returns their stream ids.

    Capped by count on every write (MAXLEN ~, so Redis trims whole nodes cheaply); age is trimmed by log_trim.
    """
    client = client or redis_client()
    maxlen = retention_lines()
    with client.pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.xadd(
                logs_key(app), {f: entry.get(f, "") for f in LOG_FIELDS}, maxlen=maxlen, approximate=True
            )
        return [as_text(entry_id) for entry_id in pipe.execute()]


def log_trim(*, app: str, now: float | None = None, client: redis.Redis | None = None) -> int:
    """Drop the app's log lines older than the retention age (and beyond the retention count). Returns how many.

    Stream ids start with the time the entry was added in ms, so MINID trims by age without reading entries.
    """
    client = client or redis_client()
    cutoff_ms = int(((now if now is not None else time.time()) - retention_days() * 86400) * 1000)
    with client.pipeline(transaction=False) as pipe:
        pipe.xtrim(logs_key(app), minid=f"{max(cutoff_ms, 0)}-0", approximate=False)
        pipe.xtrim(logs_key(app), maxlen=retention_lines(), approximate=False)
        by_age, by_count = pipe.execute()
    return by_age + by_count


def log_trim_all(*, client: redis.Redis | None = None) -> int:
    """log_trim every app's log (the shipper does this every few minutes)."""
    client = client or redis_client()
    removed = 0
    for key in client.scan_iter(match="berth:logs:*", count=500, _type="stream"):
        removed += log_trim(app=as_text(key).removeprefix("berth:logs:"), client=client)
    return removed


def event_record(*, app: str, kind: str, message: str) -> str:
    """Record a platform event of an app (kind e.g. "release.live", "build.started", "crashed").

    Written to the app's event stream and, as a `platform` line, into its log stream. Returns the event's id.
    Never raises because Redis is down: an event is worth less than the deploy or build that reports it.
    """
    ts = now_iso()
    client = redis_client()
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                events_key(app),
                {"ts": ts, "kind": kind, "message": message},
                maxlen=EVENTS_MAX,
                approximate=True,
            )
            pipe.xadd(
                logs_key(app),
                {
                    "ts": ts,
                    "process": PLATFORM_PROCESS,
                    "instance": kind,
                    "stream": "platform",
                    "line": message,
                },
                maxlen=retention_lines(),
                approximate=True,
            )
            event_id, _ = pipe.execute()
    except redis.RedisError:
        logger.exception("event %s of %s not recorded: %s", kind, app, message)
        return ""
    for _receiver, failure in event_recorded.send_robust(
        sender=None, app=app, kind=kind, message=message, ts=ts
    ):
        if isinstance(failure, Exception):
            logger.error("event %s of %s: a receiver failed: %r", kind, app, failure)
    return as_text(event_id)


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
