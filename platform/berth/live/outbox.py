"""A connection's queue of frames to send: bounded, so a client that does not keep up loses the oldest lines,
never the web worker's memory; the loss is told as a {"type": "dropped", "count": N} message in their place."""

import asyncio
import json
from collections import deque


class Outbox:
    """A bounded queue of text frames: when full, the oldest is dropped and counted."""

    def __init__(self, size: int):
        self.size = size
        self.items: deque[str] = deque()
        self.dropped = 0
        self.closed = False
        self.close_code = 1000
        self.ready = asyncio.Event()

    def put(self, text: str) -> None:
        if len(self.items) >= self.size:
            self.items.popleft()
            self.dropped += 1
        self.items.append(text)
        self.ready.set()

    def close(self, code: int = 1000) -> None:
        self.closed = True
        self.close_code = code
        self.ready.set()

    async def get(self) -> str | None:
        """The next frame, a `dropped` marker where lines were lost, or None once closed and drained."""
        while True:
            if self.dropped:
                count, self.dropped = self.dropped, 0
                return json.dumps({"type": "dropped", "count": count})
            if self.items:
                return self.items.popleft()
            if self.closed:
                return None
            self.ready.clear()
            await self.ready.wait()
