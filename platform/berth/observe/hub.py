"""Fan-out of a Redis stream to every connection of a web worker that follows it.

One XREAD loop per stream and per event loop (web worker) reads each entry once, decodes and serializes it once,
and offers it to each follower's Subscription. With 50 clients on one app this is one Redis read and one
json.dumps per line instead of 50 of each. A follower that joins behind the loop reads the stretch it missed
itself, so every follower gets every entry after its own starting point, in order, exactly once.
"""

import asyncio
import json
import logging
import weakref
from collections.abc import Callable

import redis.asyncio as aioredis

from berth.core.redis import async_redis_client
from berth.observe.services import as_text

logger = logging.getLogger(__name__)

BLOCK_MS = 5000
# redis-py 8 gives every socket a 5 s read timeout by default, which a quiet stream's blocking XREAD (BLOCK_MS)
# would hit: the read timeout must outlast the block.
SOCKET_TIMEOUT_S = BLOCK_MS / 1000 + 10

StreamId = tuple[int, int]
# (id, decoded fields, the serialized message every follower shares); filtering by fields is the follower's
Entry = tuple[StreamId, dict[str, str], str]
Render = Callable[[str, dict[str, str]], dict]


def stream_reader() -> aioredis.Redis:
    """An asyncio Redis client whose reads outlast a blocking XREAD of BLOCK_MS; close it when done."""
    return async_redis_client(socket_timeout=SOCKET_TIMEOUT_S)


def decode_fields(raw: dict) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


def stream_id(text: str) -> StreamId:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _id_text(position: StreamId) -> str:
    return "-".join(map(str, position))


class Subscription:
    """One follower's place in a shared stream: entries after `last` are passed to `deliver`, in order.
    `deliver(None)` says the shared reader failed and nothing more will come."""

    def __init__(self, last_id: str, deliver: Callable[[Entry | None], None]):
        self.last = stream_id(last_id)
        self.deliver = deliver
        self.buffer: list[Entry] | None = None  # entries held back while the subscription catches up

    def offer(self, entry: Entry) -> None:
        if self.buffer is not None:
            self.buffer.append(entry)
        elif entry[0] > self.last:
            self.last = entry[0]
            self.deliver(entry)


class StreamHub:
    """The shared reader of one stream in one event loop; it ends when its last follower leaves."""

    _hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, StreamHub]]"

    def __init__(self, key: str, render: Render):
        self.key = key
        self.render = render  # (id, fields) -> the message dict all followers share
        self.subscriptions: set[Subscription] = set()
        self.position: StreamId | None = None
        self.redis = stream_reader()
        self.task: asyncio.Task | None = None

    @classmethod
    def get(cls, key: str, render: Render) -> "StreamHub":
        hubs = cls._hubs.setdefault(asyncio.get_running_loop(), {})
        if key not in hubs:
            hubs[key] = cls(key, render)
        return hubs[key]

    def entry(self, entry_id: bytes | str, raw: dict) -> Entry:
        text_id = as_text(entry_id)
        fields = decode_fields(raw)
        return stream_id(text_id), fields, json.dumps(self.render(text_id, fields))

    async def subscribe(self, subscription: Subscription) -> None:
        if self.position is None:
            self.position = subscription.last
        self.subscriptions.add(subscription)
        if subscription.last < self.position:
            # Joined behind the hub: read the missed stretch itself, holding back what the hub delivers meanwhile.
            subscription.buffer = []
            missed = await self.redis.xrange(
                self.key, min="(" + _id_text(subscription.last), max=_id_text(self.position)
            )
            held, subscription.buffer = subscription.buffer, None
            for entry_id, raw in missed:
                subscription.offer(self.entry(entry_id, raw))
            for entry in held:
                subscription.offer(entry)
        if self.task is None:
            self.task = asyncio.create_task(self.read())

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    async def read(self) -> None:
        try:
            while self.subscriptions:
                response = await self.redis.xread(
                    {self.key: _id_text(self.position)}, count=500, block=BLOCK_MS
                )
                for _, entries in response or []:
                    for entry_id, raw in entries:
                        entry = self.entry(entry_id, raw)
                        self.position = entry[0]
                        for subscription in list(self.subscriptions):
                            subscription.offer(entry)
        except Exception:
            logger.exception("reading %s failed", self.key)
        finally:
            # no await between the last check of subscriptions and leaving the table: a newcomer gets a new hub
            hubs = self._hubs.get(asyncio.get_running_loop(), {})
            if hubs.get(self.key) is self:
                del hubs[self.key]
            for subscription in list(self.subscriptions):
                subscription.deliver(None)  # the hub failed: the follower closes rather than go silent
            await self.redis.aclose()


StreamHub._hubs = weakref.WeakKeyDictionary()
