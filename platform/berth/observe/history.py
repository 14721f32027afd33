"""Metrics history kept on the server: one Redis stream per app and process, one entry per 10 s window.

`berth:metrics:<app>:<process>` holds 24 h of 10 s windows (entry id = the window's start in ms, so a window is
written once and a range read is by time); `...:5m` holds 7 days of 5-minute roll-ups made from them as each
5 minutes closes. Both are trimmed by id as they are written, so memory is bounded whatever the uptime. Every
entry has the same fields (Redis then stores the names once per listpack node and small integers in a byte or
two): cpu (% of one CPU, summed over instances, 1 decimal), mem (MB, summed), n (instances sampled), rps and
e5xx (requests and 5xx answers per second, from HAProxy's counters), p95 (ms, from HAProxy's per-request log);
"" for "not measured" (a process HAProxy does not route to has no request figures).
"""

import logging
import math
from collections.abc import Iterable

import redis

from berth.core.redis import redis_client

logger = logging.getLogger(__name__)

RESOLUTION = 10  # seconds per raw window
RAW_KEEP = 24 * 3600 + 600  # a little over 24 h, so "the last 24 h" is always whole
ROLLUP = 300  # seconds per roll-up
ROLLUP_KEEP = 7 * 24 * 3600
FIELDS = ("cpu", "mem", "n", "rps", "e5xx", "p95")
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
MAX_POINTS = 720  # what a chart draws at most; longer ranges are averaged into wider steps on read


def history_key(app: str, process: str, *, rollup: bool = False) -> str:
    return f"berth:metrics:{app}:{process}" + (":5m" if rollup else "")


def processes_key(app: str) -> str:
    """The set of an app's processes that have history (a read needs no SCAN)."""
    return f"berth:metrics:{app}"


def window_of(ts: float, size: int = RESOLUTION) -> int:
    return int(ts // size * size)


def _text(value: float | int | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if digits == 0:
        return str(int(round(value)))
    return f"{round(value, digits):g}"


def encode(values: dict) -> dict[str, str]:
    """An entry's fields as short strings (integers where the precision allows: Redis packs those small)."""
    return {
        "cpu": _text(values.get("cpu"), 1),
        "mem": _text(values.get("mem"), 0),
        "n": _text(values.get("n"), 0),
        "rps": _text(values.get("rps"), 2),
        "e5xx": _text(values.get("e5xx"), 2),
        "p95": _text(values.get("p95"), 0),
    }


def decode(fields: dict) -> dict[str, float | None]:
    values = {}
    for name in FIELDS:
        raw = fields.get(name.encode(), fields.get(name, b""))
        raw = raw.decode() if isinstance(raw, bytes) else raw
        values[name] = float(raw) if raw else None
    return values


def _entry_ts(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0]) // 1000


def sample_write(
    *, app: str, process: str, window: int, values: dict, client: redis.Redis | None = None
) -> bool:
    """Write one 10 s window of a process; False if that window (or a later one) is already written.
    Trims what is older than RAW_KEEP and, when the window opens a new 5 minutes, rolls up the 5 before it."""
    client = client or redis_client()
    key = history_key(app, process)
    try:
        client.xadd(key, encode(values), id=f"{window * 1000}-0")
    except redis.ResponseError:
        return False  # "equal or smaller than the target stream top item": written already
    client.xtrim(key, minid=f"{(window - RAW_KEEP) * 1000}", approximate=False)
    client.sadd(processes_key(app), process)
    if window % ROLLUP == 0:
        rollup_write(app=app, process=process, bucket=window - ROLLUP, client=client)
    return True


def rollup(entries: list[dict]) -> dict:
    """One 5-minute value from its 10 s windows: means of what was measured; p95 as the request-weighted mean of
    the windows' p95 (the exact p95 of 5 minutes would need every request time: this is close when the load is
    steady, and never hides a window's spike for long as the 10 s data keeps it for 24 h)."""
    result: dict[str, float | None] = {}
    for name in ("cpu", "mem", "n", "rps", "e5xx"):
        measured = [e[name] for e in entries if e[name] is not None]
        result[name] = sum(measured) / len(measured) if measured else None
    weighted = [(e["p95"], e["rps"] or 0) for e in entries if e["p95"] is not None]
    weight = sum(w for _, w in weighted)
    if weighted:
        result["p95"] = (
            sum(p * w for p, w in weighted) / weight
            if weight
            else sum(p for p, _ in weighted) / len(weighted)
        )
    else:
        result["p95"] = None
    return result


def rollup_write(*, app: str, process: str, bucket: int, client: redis.Redis) -> None:
    raw = client.xrange(history_key(app, process), min=bucket * 1000, max=(bucket + ROLLUP) * 1000 - 1)
    if not raw:
        return
    key = history_key(app, process, rollup=True)
    try:
        client.xadd(key, encode(rollup([decode(fields) for _, fields in raw])), id=f"{bucket * 1000}-0")
    except redis.ResponseError:
        return
    client.xtrim(key, minid=f"{(bucket - ROLLUP_KEEP) * 1000}", approximate=False)


def history_delete(*, app: str, client: redis.Redis | None = None) -> None:
    """Forget a destroyed app's history."""
    client = client or redis_client()
    processes = [p.decode() for p in client.smembers(processes_key(app))]
    keys = [history_key(app, p, rollup=r) for p in processes for r in (False, True)]
    client.delete(processes_key(app), *keys)


def _bucketed(entries: Iterable[tuple[int, dict]], step: int) -> list[tuple[int, dict]]:
    buckets: dict[int, list[dict]] = {}
    for ts, values in entries:
        buckets.setdefault(window_of(ts, step), []).append(values)
    return [(ts, rollup(values) if len(values) > 1 else values[0]) for ts, values in sorted(buckets.items())]


def history_read(
    *, app: str, seconds: int, now: float, since: float | None = None, client: redis.Redis | None = None
) -> dict:
    """An app's history per process over the last `seconds` (or only what is newer than `since`, for a page
    following live), at most MAX_POINTS a process: 10 s windows averaged into wider steps for long ranges, the
    5-minute roll-ups past 24 h. Each process: {"t": [unix s], "cpu": [...], ...} (None where not measured)."""
    client = client or redis_client()
    use_rollup = seconds > RAW_KEEP
    resolution = ROLLUP if use_rollup else RESOLUTION
    step = max(resolution, math.ceil(seconds / MAX_POINTS / resolution) * resolution)
    start = now - seconds if since is None else max(now - seconds, since + 1)
    processes = sorted(p.decode() for p in client.smembers(processes_key(app)))
    result = {}
    for process in processes:
        raw = client.xrange(history_key(app, process, rollup=use_rollup), min=int(start * 1000), max="+")
        points = [(_entry_ts(entry_id), decode(fields)) for entry_id, fields in raw]
        if step > resolution:
            points = _bucketed(points, step)
        series: dict[str, list] = {"t": [ts for ts, _ in points]}
        for name in FIELDS:
            series[name] = [None if v[name] is None else round(v[name], 2) for _, v in points]
        result[process] = series
    return {"app": app, "step": step, "seconds": seconds, "processes": result}
