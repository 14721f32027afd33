"""WebSocket consumers: an app's logs, a build's output, an app's events and health, the nodes.

Each connection reads the Redis streams itself (XREAD BLOCK in a task of its own), so one slow or stuck client
never holds up another. Live app logs go through a bounded outbox per connection: when the client does not keep up,
the oldest queued lines are dropped and a {"type": "dropped", "count": N} message takes their place.

Closing codes: 4401 no (valid) credentials, 4404 the app or build is not one of the user's teams' (or does not
exist), 4403 the user's role is too low (nodes: platform admins only). The socket is accepted first and then closed with
the code, because a close before the handshake reaches the client as a bare HTTP 403 without it.
"""

import asyncio
import json
import logging
import weakref
from collections import deque
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404

from berth.builds.logstream import replay_start
from berth.core.lines import MORE
from berth.nodes.selectors import can_see_nodes
from berth.observe.metrics import NODES_KEY, health_key
from berth.observe.services import as_text, events_key, logs_key

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_BIG = 1009  # RFC 6455: a message too big to process

DEFAULT_TAIL = 100
MAX_TAIL_ASKED = 10**9  # what a `tail` parameter can say; what is sent is bounded by the replay settings
REPLAY_SCAN_LIMIT = 200_000  # entries read back at most to find N lines of one process type
BLOCK_MS = 5000
# redis-py 8 gives every socket a 5 s read timeout by default, which a quiet stream's blocking XREAD (BLOCK_MS)
# would hit: the read timeout must outlast the block.
SOCKET_TIMEOUT_S = BLOCK_MS / 1000 + 10


def _redis() -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT_S)


TICK_SECONDS = 3.0


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


def _fields(raw: dict) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _query(scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _int(value: str | None, default: int, maximum: int) -> int:
    try:
        return max(0, min(int(value), maximum)) if value is not None else default
    except ValueError:
        return default


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


def stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """One connection's place in a shared stream: entries after `last` are passed to `deliver`, in order."""

    def __init__(self, last_id: str, deliver):
        self.last = stream_id(last_id)
        self.deliver = deliver
        self.buffer: list | None = None  # entries held back while the subscription catches up

    def offer(self, entry: tuple) -> None:
        if self.buffer is not None:
            self.buffer.append(entry)
        elif entry[0] > self.last:
            self.last = entry[0]
            self.deliver(entry)


class StreamHub:
    """One XREAD loop per Redis stream and per event loop (web worker), fanning entries out to every connection
    that follows the stream, each entry decoded and serialized once. With 50 clients on one app this is one Redis
    read and one json.dumps per line instead of 50 of each. The hub ends when its last follower leaves."""

    _hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, StreamHub]]"

    def __init__(self, key: str, render):
        self.key = key
        self.render = render  # fields -> the message dict all followers share (filtering is theirs)
        self.subscriptions: set[Subscription] = set()
        self.position: tuple[int, int] | None = None
        self.redis = _redis()
        self.task: asyncio.Task | None = None

    @classmethod
    def get(cls, key: str, render) -> "StreamHub":
        hubs = cls._hubs.setdefault(asyncio.get_running_loop(), {})
        if key not in hubs:
            hubs[key] = cls(key, render)
        return hubs[key]

    def entry(self, entry_id, raw) -> tuple:
        text_id = as_text(entry_id)
        fields = _fields(raw)
        message = self.render(text_id, fields)
        return stream_id(text_id), fields, json.dumps(message)

    async def subscribe(self, subscription: Subscription) -> None:
        if self.position is None:
            self.position = subscription.last
        self.subscriptions.add(subscription)
        if subscription.last < self.position:
            # Joined behind the hub: read the missed stretch itself, holding back what the hub delivers meanwhile.
            subscription.buffer = []
            upto = self.position
            missed = await self.redis.xrange(
                self.key, min="(" + "-".join(map(str, subscription.last)), max="-".join(map(str, upto))
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
                cursor = "-".join(map(str, self.position))
                response = await self.redis.xread({self.key: cursor}, count=500, block=BLOCK_MS)
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
                subscription.deliver(None)  # the hub failed: the connection closes rather than go silent
            await self.redis.aclose()


StreamHub._hubs = weakref.WeakKeyDictionary()


class StreamConsumer(AsyncWebsocketConsumer):
    """Accept, authorize, then run `produce()` and a sender in tasks of their own until either side closes."""

    # No channel layer: these consumers read Redis streams themselves, and a layer channel per socket would
    # only poll Redis for messages nobody sends.
    channel_layer_alias = "no-channel-layer"
    outbox_size = 1000

    async def connect(self):
        self.tasks: list[asyncio.Task] = []
        self.redis = None
        self.outbox = Outbox(self.outbox_size)
        self.query = _query(self.scope)
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            await database_sync_to_async(self.authorize)(user)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.redis = _redis()
        self.tasks = [
            asyncio.create_task(self._run(self.produce())),
            asyncio.create_task(self._run(self.deliver())),
        ]

    async def disconnect(self, code):
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self.tasks if t is not current), return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    async def _run(self, coroutine) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed", type(self).__name__)
            await self.close(code=1011)

    def authorize(self, user) -> None:
        """Raise Http404 or PermissionDenied unless the user may watch this (runs in a thread)."""
        raise NotImplementedError

    async def produce(self) -> None:
        raise NotImplementedError

    async def deliver(self) -> None:
        while (text := await self.outbox.get()) is not None:
            await self.send(text_data=text)
        await self.close(code=self.outbox.close_code)

    async def send_json(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message))

    async def receive(self, text_data=None, bytes_data=None):
        # These sockets only stream out. uvicorn closes a bigger message before reading it (ws_max_size, set by
        # berth.config.worker); this holds the same line under any other server.
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.BERTH_MAX_WS_MESSAGE_BYTES:
            await self.close(code=CLOSE_TOO_BIG)

    def authorize_app(self, user, name: str) -> None:
        from berth.apps.selectors import app_for_user

        self.app = app_for_user(user=user, name=name, min_role="viewer").name

    @property
    def follow(self) -> bool:
        # An addition to the contract for the CLI: `follow=0` replays and then closes (code 1000).
        return self.query.get("follow", "1") not in ("0", "false", "no")


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


class AppLogsConsumer(StreamConsumer):
    """/ws/apps/<app>/logs?tail=N&process=web: the last N lines, then live lines (through the app's StreamHub)."""

    hub: StreamHub | None = None

    def authorize(self, user) -> None:
        self.authorize_app(user, self.scope["url_route"]["kwargs"]["app"])

    def wants(self, fields: dict[str, str]) -> bool:
        process = self.query.get("process")
        return not process or fields.get("process") == process

    def message(self, entry_id: str, fields: dict[str, str]) -> dict | None:
        return log_message(entry_id, fields) if self.wants(fields) else None

    async def replay(self, key: str, asked: int) -> str:
        """Send the last `asked` matching lines, oldest first, within the replay limits (BERTH_LOG_REPLAY_MAX_LINES
        and _BYTES: past them, the newest that fit and a note); returns the id to follow from."""
        newest = "0-0"
        found: list[dict] = []
        upper, scanned, size, full = "+", 0, 0, False
        tail = min(asked, settings.BERTH_LOG_REPLAY_MAX_LINES)
        batch = max(min(tail, 1000), 1) if not self.query.get("process") else 1000
        while len(found) < tail and scanned < REPLAY_SCAN_LIMIT and not full:
            entries = await self.redis.xrevrange(key, max=upper, min="-", count=batch)
            if not entries:
                break
            if newest == "0-0":
                newest = as_text(entries[0][0])
            for entry_id, raw in entries:
                message = self.message(as_text(entry_id), _fields(raw))
                if message is None or len(found) >= tail:
                    continue
                size += len(message.get("line", "").encode())
                if size > settings.BERTH_LOG_REPLAY_MAX_BYTES:
                    full = True
                    break
                found.append(message)
            scanned += len(entries)
            upper = "(" + as_text(entries[-1][0])  # exclusive: continue below the oldest entry read
        if tail == 0 and newest == "0-0":
            entries = await self.redis.xrevrange(key, count=1)
            newest = as_text(entries[0][0]) if entries else "0-0"
        if full or (asked > tail and len(found) == tail):  # lines were left out, not merely fewer exist
            await self.send_json(replay_note(asked=asked, sent=len(found)))
        for message in reversed(found):
            # replay waits for the client (it is what it asked for); only live lines may be dropped
            await self.send_json(message)
        return newest

    async def produce(self) -> None:
        key = logs_key(self.app)
        last_id = await self.replay(key, _int(self.query.get("tail"), DEFAULT_TAIL, MAX_TAIL_ASKED))
        if not self.follow:
            self.outbox.close()
            return
        self.hub = StreamHub.get(key, log_message)
        self.subscription = Subscription(last_id, self.on_entry)
        await self.hub.subscribe(self.subscription)

    def on_entry(self, entry: tuple | None) -> None:
        if entry is None:
            self.outbox.close(code=1011)  # the shared reader failed: close rather than go silent
            return
        _, fields, text = entry
        if self.wants(fields):
            self.outbox.put(text)

    async def disconnect(self, code):
        if self.hub is not None:
            self.hub.unsubscribe(self.subscription)
        await super().disconnect(code)


def stored_log_tail(stored: list[str]) -> list[str]:
    """The newest lines of a build's stored log that fit the replay limits."""
    lines, size = [], 0
    for line in reversed(stored):
        size += len(line.encode())
        if len(lines) >= settings.BERTH_LOG_REPLAY_MAX_LINES or size > settings.BERTH_LOG_REPLAY_MAX_BYTES:
            break
        lines.append(line)
    return lines[::-1]


class BuildConsumer(StreamConsumer):
    """/ws/builds/<id>: every line of the build from the start, then live, then {"type": "end"} and close.

    No line is dropped here: a slow client only slows its own reader (the build log is bounded).
    """

    def authorize(self, user) -> None:
        from berth.builds.models import Build

        build = (
            Build.objects.select_related("app")
            .filter(pk=self.scope["url_route"]["kwargs"]["build_id"])
            .first()
        )
        if build is None:
            raise Http404("no such build")
        self.authorize_app(user, build.app.name)
        self.build_id = build.pk
        self.key = build.stream_key

    def build_state(self) -> tuple[str | None, str]:
        from berth.builds.models import Build

        build = Build.objects.filter(pk=self.build_id).first()
        if build is None:
            return "cancelled", ""
        return (build.status if build.is_finished else None), build.log

    async def produce(self) -> None:
        last_id, left_out = await replay_start(
            self.redis,
            self.key,
            max_lines=settings.BERTH_LOG_REPLAY_MAX_LINES,
            max_bytes=settings.BERTH_LOG_REPLAY_MAX_BYTES,
        )
        seen = left_out > 0  # the stored log would repeat what was left out: only the stream's lines are sent
        if left_out:
            kept = await self.redis.xlen(self.key) - left_out
            await self.send_json(replay_note(asked=None, sent=kept, left_out=left_out))
        while True:
            response = await self.redis.xread({self.key: last_id}, count=500, block=BLOCK_MS)
            for _, entries in response or []:
                for entry_id, raw in entries:
                    last_id, seen = as_text(entry_id), True
                    fields = _fields(raw)
                    if "end" in fields:
                        await self.finish(fields["end"])
                        return
                    message = {"type": "line", "line": fields.get("line", "")}
                    if MORE in fields:
                        message[MORE] = True  # a piece of a long line: the next line continues it
                    await self.send_json(message)
            if response:
                continue
            # Nothing new for a while: the stream may have expired, or the build ended without closing it.
            status, log = await database_sync_to_async(self.build_state)()
            if status is None:
                continue
            if await self.redis.xread({self.key: last_id}, count=1):
                continue  # lines (or the end marker) arrived meanwhile
            if not seen:
                stored = log.splitlines()
                lines = stored_log_tail(stored)
                if len(lines) < len(stored):
                    left_out = len(stored) - len(lines)
                    await self.send_json(replay_note(asked=None, sent=len(lines), left_out=left_out))
                for line in lines:
                    await self.send_json({"type": "line", "line": line})
            await self.finish(status)
            return

    async def finish(self, status: str) -> None:
        await self.send_json({"type": "end", "status": status})
        self.outbox.close()


class AppEventsConsumer(StreamConsumer):
    """/ws/apps/<app>/events: the recent platform events, then live ones, and the app's health every few s."""

    def authorize(self, user) -> None:
        self.authorize_app(user, self.scope["url_route"]["kwargs"]["app"])

    @staticmethod
    def event(fields: dict[str, str]) -> str:
        return json.dumps(
            {
                "type": "event",
                "ts": fields.get("ts", ""),
                "kind": fields.get("kind", ""),
                "message": fields.get("message", ""),
            }
        )

    async def health(self) -> None:
        while True:
            entries = await self.redis.xrevrange(health_key(self.app), count=1)
            if entries:
                snapshot = json.loads(as_text(entries[0][1][b"data"]))
                self.outbox.put(json.dumps({"type": "health", "processes": snapshot["processes"]}))
            await asyncio.sleep(TICK_SECONDS)

    async def produce(self) -> None:
        key = events_key(self.app)
        entries = await self.redis.xrevrange(key, count=_int(self.query.get("tail"), 20, 1000) or 1)
        last_id = as_text(entries[0][0]) if entries else "0-0"
        if self.query.get("tail") == "0":
            entries = []
        for _, raw in reversed(entries):
            await self.send(text_data=self.event(_fields(raw)))
        if not self.follow:
            self.outbox.close()
            return
        self.tasks.append(asyncio.create_task(self._run(self.health())))
        while True:
            response = await self.redis.xread({key: last_id}, count=100, block=BLOCK_MS)
            for _, batch in response or []:
                for entry_id, raw in batch:
                    last_id = as_text(entry_id)
                    self.outbox.put(self.event(_fields(raw)))


class NodesConsumer(StreamConsumer):
    """/ws/nodes: the swarm's nodes every few seconds, for platform admins (berth.nodes.selectors.can_see_nodes)."""

    def authorize(self, user) -> None:
        if not can_see_nodes(user):
            raise PermissionDenied("the nodes are shown to platform admins")

    async def produce(self) -> None:
        while True:
            entries = await self.redis.xrevrange(NODES_KEY, count=1)
            if entries:
                snapshot = json.loads(as_text(entries[0][1][b"data"]))
                self.outbox.put(json.dumps({"type": "nodes", "nodes": snapshot["nodes"]}))
            await asyncio.sleep(TICK_SECONDS)
