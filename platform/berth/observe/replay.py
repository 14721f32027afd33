"""What a watcher of an app is sent: its log lines and events as messages, and what it gets first on joining.

The messages are the WebSocket contract's (`line`, `gap`, `event`, `note`); the replays read the newest entries of
a stream within BERTH_LOG_REPLAY_MAX_LINES / _BYTES and say where following them live must begin. The reads take
an asyncio Redis client: they run on the web worker's event loop.
"""

import json
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from django.conf import settings

from berth.core.lines import MORE
from berth.observe.hub import decode_fields
from berth.observe.services import as_text, events_key, logs_key

REPLAY_SCAN_LIMIT = 200_000  # entries read back at most to find N lines of one process type
EVENTS_REPLAY_MAX = 1000


def log_message(entry_id: str, fields: dict[str, str]) -> dict:
    """An entry of an app's log stream as the contract's `line` (or `gap`) message."""
    if fields.get("stream") == "gap":
        return {"type": "gap", "message": fields.get("line", "")}
    message = {
        "type": "line",
        "id": entry_id,
        "ts": fields.get("ts", ""),
        "process": fields.get("process", ""),
        "instance": fields.get("instance", ""),
        "stream": fields.get("stream", ""),
        "line": fields.get("line", ""),
    }
    if MORE in fields:
        message[MORE] = True  # a piece of a long line: the next line of this instance and stream continues it
    return message


def event_message(entry_id: str, fields: dict[str, str]) -> dict:
    """An entry of an app's event stream as the contract's `event` message."""
    return {
        "type": "event",
        "ts": fields.get("ts", ""),
        "kind": fields.get("kind", ""),
        "message": fields.get("message", ""),
    }


def replay_note(*, asked: int | None, sent: int, left_out: int | None = None) -> dict:
    """The message a client gets when a replay left lines out (BERTH_LOG_REPLAY_MAX_LINES / _BYTES)."""
    limits = (
        f"a replay sends at most {settings.BERTH_LOG_REPLAY_MAX_LINES} lines and "
        f"{settings.BERTH_LOG_REPLAY_MAX_BYTES} bytes"
    )
    if asked is not None:
        return {"type": "note", "message": f"asked for {asked} lines, sent the last {sent}: {limits}"}
    return {
        "type": "note",
        "message": f"{left_out} earlier lines are left out, sent the last {sent}: {limits}",
    }


def process_matches(fields: dict[str, str], process: str | None) -> bool:
    """Whether a log entry is of the process type a watcher asked for (None: any)."""
    return not process or fields.get("process") == process


@dataclass
class Replay:
    """What a joining watcher is sent before live entries: a note if lines were left out, the messages oldest first,
    and the stream id to follow from."""

    last_id: str
    messages: list[dict] = field(default_factory=list)
    note: dict | None = None


async def logs_replay(client: aioredis.Redis, *, app: str, asked: int, process: str | None) -> Replay:
    """The last `asked` lines of the app's log (of one process type if given), within the replay limits: past
    them, the newest that fit and a note."""
    key = logs_key(app)
    newest = "0-0"
    found: list[dict] = []
    upper, scanned, size, full = "+", 0, 0, False
    tail = min(asked, settings.BERTH_LOG_REPLAY_MAX_LINES)
    batch = max(min(tail, 1000), 1) if not process else 1000
    while len(found) < tail and scanned < REPLAY_SCAN_LIMIT and not full:
        entries = await client.xrevrange(key, max=upper, min="-", count=batch)
        if not entries:
            break
        if newest == "0-0":
            newest = as_text(entries[0][0])
        for entry_id, raw in entries:
            fields = decode_fields(raw)
            if not process_matches(fields, process) or len(found) >= tail:
                continue
            message = log_message(as_text(entry_id), fields)
            size += len(message.get("line", "").encode())
            if size > settings.BERTH_LOG_REPLAY_MAX_BYTES:
                full = True
                break
            found.append(message)
        scanned += len(entries)
        upper = "(" + as_text(entries[-1][0])  # exclusive: continue below the oldest entry read
    if tail == 0 and newest == "0-0":
        newest = await _newest_id(client, key)
    replay = Replay(last_id=newest, messages=found[::-1])
    if full or (asked > tail and len(found) == tail):  # lines were left out, not merely fewer exist
        replay.note = replay_note(asked=asked, sent=len(found))
    return replay


async def events_replay(client: aioredis.Redis, *, app: str, tail: int) -> Replay:
    """The app's last `tail` events (at most EVENTS_REPLAY_MAX)."""
    key = events_key(app)
    tail = min(tail, EVENTS_REPLAY_MAX)
    if tail == 0:
        return Replay(last_id=await _newest_id(client, key))
    entries = await client.xrevrange(key, count=tail)
    return Replay(
        last_id=as_text(entries[0][0]) if entries else "0-0",
        messages=[
            event_message(as_text(entry_id), decode_fields(raw)) for entry_id, raw in reversed(entries)
        ],
    )


async def latest_snapshot(client: aioredis.Redis, key: str) -> dict | None:
    """The newest snapshot of a series (an app's health, or the nodes), or None; as
    berth.observe.metrics.latest_snapshot, on the event loop."""
    for _, raw in await client.xrevrange(key, count=1):
        return json.loads(as_text(raw[b"data"]))
    return None


async def _newest_id(client: aioredis.Redis, key: str) -> str:
    entries = await client.xrevrange(key, count=1)
    return as_text(entries[0][0]) if entries else "0-0"
