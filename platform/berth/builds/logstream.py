"""A build's log as a Redis stream: the builder appends lines, any number of readers follow them live.

Each entry is `{"line": text}`; `close(status)` appends one `{"end": status}` entry, after which followers stop.
The stream is capped (XADD MAXLEN ~) so a runaway build cannot fill Redis, and expires a while after it closes.
A line longer than BERTH_LOG_LINE_MAX_BYTES is stored as several entries, each but the last with `"more": "1"`
(berth.core.lines): followers get the pieces as they come, `read_all` joins them again.

Readers in the web process use the async functions at the end (redis.asyncio): an open stream then waits on the
event loop, never in a thread that git pushes and API calls need.
"""

import time
from collections.abc import AsyncIterator, Iterator

import redis
import redis.asyncio as aioredis

from berth.core.lines import MORE, text_pieces

MAX_LINES = 20_000
EXPIRE_AFTER_CLOSE_SECONDS = 7 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class LogStream:
    """One build's log lines in the Redis stream `key`."""

    def __init__(self, redis_client: redis.Redis, key: str):
        self.redis = redis_client
        self.key = key

    def append(self, line: str, *, more: bool = False) -> str:
        """Add a line (several entries if it is longer than BERTH_LOG_LINE_MAX_BYTES; `more`: the next append
        continues it); returns the stream id of its last entry."""
        pieces = text_pieces(line)
        if len(pieces) == 1 and not more:
            return _text(self.redis.xadd(self.key, {"line": line}, maxlen=MAX_LINES, approximate=True))
        with self.redis.pipeline() as pipe:
            for number, piece in enumerate(pieces, start=1):
                fields = {"line": piece, **({MORE: "1"} if more or number < len(pieces) else {})}
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
        line comes as its pieces (follow_fields says which go on)."""
        for entry_id, fields in self.follow_fields(last_id, block_ms=block_ms, timeout=timeout):
            yield entry_id, fields.get("line", "")

    def follow_fields(
        self, last_id: str = "0", *, block_ms: int = 1000, timeout: float | None = 60.0
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """As follow, with each entry's fields (`line`, and `more` on a piece the next entry continues)."""
        idle_since = time.monotonic()
        while True:
            response = self.redis.xread({self.key: last_id}, count=500, block=block_ms)
            if not response:
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, raw in response[0][1]:
                last_id = _text(entry_id)
                fields = _fields(raw)
                if "end" in fields:
                    return
                yield last_id, fields

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


# --- readers in the web process: async, so an open stream holds no thread ---------------------------------------


def _fields(raw: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


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


async def follow_async(
    client: aioredis.Redis,
    key: str,
    last_id: str = "0",
    *,
    block_ms: int = 5000,
    timeout: float | None = 60.0,
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """(id, fields) of each entry after `last_id` as it is appended, until the end marker (not yielded) or no entry
    for `timeout` seconds; as LogStream.follow, on the event loop."""
    idle_since = time.monotonic()
    while True:
        response = await client.xread({key: last_id}, count=500, block=block_ms)
        if not response:
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                return
            continue
        idle_since = time.monotonic()
        for entry_id, raw in response[0][1]:
            last_id = _text(entry_id)
            fields = _fields(raw)
            if "end" in fields:
                return
            yield last_id, fields
