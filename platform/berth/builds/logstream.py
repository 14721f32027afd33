"""A build's log as a Redis stream: the builder appends lines, any number of readers follow them live.

Each entry is `{"line": text}`; `close(status)` appends one `{"end": status}` entry, after which followers stop.
The stream is capped (XADD MAXLEN ~) so a runaway build cannot fill Redis, and expires a while after it closes.
A line longer than BERTH_LOG_LINE_MAX_BYTES is stored as several entries, each but the last with `"more": "1"`
(berth.core.lines): followers get the pieces as they come, `read_all` joins them again.

Following a stream is one piece of bookkeeping (`_Cursor`: where to read from, the end marker, when to give up)
driven by a blocking XREAD (`LogStream.follow`, for the git server's threads) or an asyncio one (`build_output`).
`build_output` is the one end-of-stream protocol of the web process, used by the WebSocket consumer and the API's
follow: it waits on the event loop, never in a thread that git pushes and API calls need.
"""

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from berth.builds.models import Build
from berth.builds.selectors import build_by_id
from berth.core.lines import MORE, text_pieces
from berth.observe.hub import BLOCK_MS

MAX_LINES = 20_000
DETAIL = "detail"  # field marking a line kept in the full log but not shown to the pusher
EXPIRE_AFTER_CLOSE_SECONDS = 7 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class LogStream:
    """One build's log lines in the Redis stream `key`."""

    def __init__(self, redis_client: redis.Redis, key: str):
        self.redis = redis_client
        self.key = key

    def append(self, line: str, *, more: bool = False, detail: bool = False) -> str:
        """Add a line (several entries if it is longer than BERTH_LOG_LINE_MAX_BYTES; `more`: the next append
        continues it); returns the stream id of its last entry. A `detail` line (the engine's own step noise) is
        kept in the full log but not relayed to the pusher (`follow` skips it)."""
        pieces = text_pieces(line)
        marks = {DETAIL: "1"} if detail else {}
        if len(pieces) == 1 and not more:
            return _text(
                self.redis.xadd(self.key, {"line": line, **marks}, maxlen=MAX_LINES, approximate=True)
            )
        with self.redis.pipeline() as pipe:
            for number, piece in enumerate(pieces, start=1):
                fields = {"line": piece, **marks, **({MORE: "1"} if more or number < len(pieces) else {})}
                pipe.xadd(self.key, fields, maxlen=MAX_LINES, approximate=True)
            return _text(pipe.execute()[-1])

    def close(self, status: str) -> str:
        """Mark the log finished with `status` (e.g. "succeeded", "failed"); followers stop here."""
        with self.redis.pipeline() as pipe:
            pipe.xadd(self.key, {"end": status}, maxlen=MAX_LINES, approximate=True)
            pipe.expire(self.key, EXPIRE_AFTER_CLOSE_SECONDS)
            entry_id, _ = pipe.execute()
        return _text(entry_id)

    def status(self) -> str | None:
        """The status given to close(), or None while the log is open."""
        for _, fields in self.redis.xrevrange(self.key, count=1):
            end = fields.get(b"end", fields.get("end"))
            return None if end is None else _text(end)
        return None

    def follow(
        self, last_id: str = "0", *, block_ms: int = 1000, timeout: float | None = 60.0
    ) -> Iterator[tuple[str, str]]:
        """Yield (id, line) after `last_id` as they are appended, until the end marker, or until no line has come
        for `timeout` seconds (None: wait for ever). Pass the last id seen to resume after a reconnect. A long
        line comes as its pieces (follow_fields says which go on). What the pusher reads: detail lines are left
        out (follow_fields and read_all have them)."""
        for entry_id, fields in self.follow_fields(last_id, block_ms=block_ms, timeout=timeout):
            if fields.get(DETAIL):
                continue
            yield entry_id, fields.get("line", "")

    def follow_fields(
        self, last_id: str = "0", *, block_ms: int = 1000, timeout: float | None = 60.0
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """As follow, with each entry's fields (`line`, and `more` on a piece the next entry continues)."""
        cursor = _Cursor(self.key, last_id, timeout=timeout)
        while not cursor.done:
            yield from cursor.take(self.redis.xread(cursor.streams, count=500, block=block_ms))

    def read_all(self) -> list[str]:
        """Every line kept so far, long ones joined again (the oldest may have been trimmed past MAX_LINES)."""
        lines, continued = [], False
        for _, fields in self.redis.xrange(self.key):
            if b"end" in fields or "end" in fields:
                continue
            text = _text(fields.get(b"line", fields.get("line", b"")))
            if continued:
                lines[-1] += text
            else:
                lines.append(text)
            continued = MORE.encode() in fields or MORE in fields
        return lines

    def replay_start(self, *, max_lines: int, max_bytes: int) -> tuple[str, int]:
        """As `replay_start` below, with this blocking client (the WSGI server and tests)."""
        budget = _Budget(max_lines, max_bytes, total=self.redis.xlen(self.key))
        upper = "+"
        while not budget.full():
            entries = self.redis.xrevrange(self.key, max=upper, min="-", count=500)
            if not entries or budget.over(entries):
                break
            upper = "(" + _text(entries[-1][0])
        return budget.start, budget.left_out


class _Budget:
    """Counts entries from the newest back until a replay's line or byte budget is spent."""

    def __init__(self, max_lines: int, max_bytes: int, *, total: int):
        self.max_lines, self.max_bytes, self.total = max_lines, max_bytes, total
        self.kept, self.size, self.start, self.left_out = 0, 0, "0", 0

    def full(self) -> bool:
        return self.kept >= self.total

    def over(self, entries_newest_first: list) -> bool:
        for entry_id, raw in entries_newest_first:
            self.size += len(raw.get(b"line", raw.get("line", b"")))
            if self.kept >= self.max_lines or self.size > self.max_bytes:
                self.start, self.left_out = _text(entry_id), self.total - self.kept
                return True
            self.kept += 1
        return False


class _Cursor:
    """Where a follower of a stream is: the id to read after, the end marker's status once it came, and how long
    nothing has. The blocking and the asyncio follower share it; only their call to XREAD differs."""

    def __init__(self, key: str, last_id: str, *, timeout: float | None):
        self.key, self.last_id, self.timeout = key, last_id, timeout
        self.end: str | None = None
        self.idle_since = time.monotonic()

    @property
    def streams(self) -> dict[str, str]:
        """XREAD's streams argument: this stream, after the last id seen."""
        return {self.key: self.last_id}

    def take(self, response: list | None) -> list[tuple[str, dict[str, str]]]:
        """The (id, fields) of an XREAD response's entries before the end marker, which sets `end`."""
        if response:
            self.idle_since = time.monotonic()
        entries = []
        for _, batch in response or []:
            for entry_id, raw in batch:
                self.last_id = _text(entry_id)
                fields = _fields(raw)
                if "end" in fields:
                    self.end = fields["end"]
                    return entries
                entries.append((self.last_id, fields))
        return entries

    @property
    def idle_too_long(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.idle_since >= self.timeout

    @property
    def done(self) -> bool:
        return self.end is not None or self.idle_too_long


def _fields(raw: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


# --- a build's output in the web process: async, so an open stream holds no thread ------------------------------


@dataclass(frozen=True)
class LeftOut:
    """`count` earlier lines are left out of the replay (BERTH_LOG_REPLAY_MAX_LINES / _BYTES); `sent` follow."""

    count: int
    sent: int


@dataclass(frozen=True)
class Line:
    text: str
    more: bool = False  # a piece of a long line (berth.core.lines): the next Line continues it


@dataclass(frozen=True)
class End:
    status: str


async def replay_start(
    client: aioredis.Redis, key: str, *, max_lines: int, max_bytes: int
) -> tuple[str, int]:
    """Where a replay of the stream from its start must begin to send at most `max_lines` entries and
    `max_bytes` of text, the newest ones: (the id to read after, how many entries are left out)."""
    budget = _Budget(max_lines, max_bytes, total=await client.xlen(key))
    upper = "+"
    while not budget.full():
        entries = await client.xrevrange(key, max=upper, min="-", count=500)
        if not entries or budget.over(entries):
            break
        upper = "(" + _text(entries[-1][0])
    return budget.start, budget.left_out


def saved_log_tail(log: str) -> tuple[list[str], int]:
    """The newest lines of a build's saved log that fit the replay limits, and how many are left out."""
    stored = log.splitlines()
    lines, size = [], 0
    for line in reversed(stored):
        size += len(line.encode())
        if len(lines) >= settings.BERTH_LOG_REPLAY_MAX_LINES or size > settings.BERTH_LOG_REPLAY_MAX_BYTES:
            break
        lines.append(line)
    return lines[::-1], len(stored) - len(lines)


async def build_output(
    client: aioredis.Redis, build: Build, *, block_ms: int = BLOCK_MS, timeout: float | None = None
) -> AsyncIterator[LeftOut | Line | End]:
    """A build's output for a follower: the newest lines within the replay limits (after a LeftOut when older ones
    are left out), the live lines, then End(status).

    The end is the stream's end marker; or, once the stream is quiet and the build's row says it finished (its
    stream expired, or its builder died before closing it), the saved log (unless the stream gave lines) and the
    row's status; or, after `timeout` seconds without a line, the row's status as it is. A build that is gone
    ends as "cancelled". `client` must outlast a blocking read of `block_ms` (berth.observe.hub.stream_reader).
    """
    key = build.stream_key
    start, left_out = await replay_start(
        client,
        key,
        max_lines=settings.BERTH_LOG_REPLAY_MAX_LINES,
        max_bytes=settings.BERTH_LOG_REPLAY_MAX_BYTES,
    )
    if left_out:
        yield LeftOut(count=left_out, sent=await client.xlen(key) - left_out)
    seen = left_out > 0  # the saved log would repeat what was left out: only the stream's lines are sent
    cursor = _Cursor(key, start, timeout=timeout)
    while cursor.end is None:
        response = await client.xread(cursor.streams, count=500, block=block_ms)
        for _, fields in cursor.take(response):
            seen = True
            yield Line(fields.get("line", ""), more=MORE in fields)
        if response:
            continue
        # Nothing new for a while: the stream may have expired, or the build ended without closing it.
        row = await database_sync_to_async(build_by_id)(build.pk)
        finished = row is None or row.is_finished
        if not (finished or cursor.idle_too_long):
            continue
        if await client.xread(cursor.streams, count=1):
            continue  # lines (or the end marker) arrived meanwhile
        if finished and not seen:
            lines, left_out = saved_log_tail(row.log if row is not None else "")
            if left_out:
                yield LeftOut(count=left_out, sent=len(lines))
            for line in lines:
                yield Line(line)
        yield End(row.status if row is not None else "cancelled")
        return
    yield End(cursor.end)
