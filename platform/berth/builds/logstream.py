"""A build's log as a Redis stream: the builder appends lines, any number of readers follow them live.

Each entry is `{"line": text}`; `close(status)` appends one `{"end": status}` entry, after which followers stop.
The stream is capped (XADD MAXLEN ~) so a runaway build cannot fill Redis, and expires a while after it closes.
"""

import time
from collections.abc import Iterator

import redis

MAX_LINES = 20_000
EXPIRE_AFTER_CLOSE_SECONDS = 7 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class LogStream:
    """One build's log lines in the Redis stream `key`."""

    def __init__(self, redis_client: redis.Redis, key: str):
        self.redis = redis_client
        self.key = key

    def append(self, line: str) -> str:
        """Add a line; returns its stream id."""
        return _text(self.redis.xadd(self.key, {"line": line}, maxlen=MAX_LINES, approximate=True))

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
        for `timeout` seconds (None: wait for ever). Pass the last id seen to resume after a reconnect."""
        idle_since = time.monotonic()
        while True:
            response = self.redis.xread({self.key: last_id}, count=500, block=block_ms)
            if not response:
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, fields in response[0][1]:
                last_id = _text(entry_id)
                if b"end" in fields or "end" in fields:
                    return
                yield last_id, _text(fields.get(b"line", fields.get("line", b"")))

    def read_all(self) -> list[str]:
        """Every line kept so far (the oldest may have been trimmed past MAX_LINES)."""
        return [
            _text(fields.get(b"line", fields.get("line", b"")))
            for _, fields in self.redis.xrange(self.key)
            if b"end" not in fields and "end" not in fields
        ]
