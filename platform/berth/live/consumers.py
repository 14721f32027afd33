"""WebSocket consumers: an app's logs, a build's output, an app's events and health, the nodes.

Each consumer authorizes through the selectors, then sends what berth.observe (replays, the shared stream readers
of berth.observe.hub, snapshots), berth.builds.logstream (a build's output) and berth.live.app_state (the app page's
state) produce. Each connection has a
task that produces and one that sends, so one slow or stuck client never holds up another. Live app lines go
through a bounded outbox per connection (berth.live.outbox): a client that does not keep up loses the oldest.

Closing codes: 4401 no (valid) credentials, 4404 the app or build is not one of the user's teams' (or does not
exist), 4403 the user's role is too low (nodes: platform admins only). The socket is accepted first and then closed with
the code, because a close before the handshake reaches the client as a bare HTTP 403 without it.
"""

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from urllib.parse import parse_qs

from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404

from berth.apps.selectors import app_for_user
from berth.builds.logstream import End, LeftOut, Line, build_output
from berth.builds.selectors import build_for_user
from berth.core.lines import MORE
from berth.live.app_state import app_live_state
from berth.live.outbox import Outbox
from berth.nodes.selectors import can_see_nodes
from berth.observe.hub import BLOCK_MS, Entry, Render, StreamHub, Subscription, stream_reader
from berth.observe.metrics import NODES_KEY, health_key
from berth.observe.replay import (
    Replay,
    event_message,
    events_replay,
    latest_snapshot,
    log_message,
    logs_replay,
    process_matches,
    replay_note,
)
from berth.observe.services import events_key, logs_key

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_BIG = 1009  # RFC 6455: a message too big to process

DEFAULT_TAIL = 100
DEFAULT_EVENTS_TAIL = 20
MAX_TAIL_ASKED = 10**9  # what a `tail` parameter can say; what is sent is bounded by the replay settings
TICK_SECONDS = 3.0
# The app page's state (AppStateConsumer): read again at once when an app event arrives, and at least this often,
# for what changes without an event (a build queued, Swarm starting or stopping a task).
STATE_POLL_SECONDS = 0.3  # with the read itself (0.1-0.4 s on a busy machine), under a second
# How long a state caught between "old release superseded" and "new release live" is held back (see
# berth.live.app_state.app_live_state's `settled`): in steps of STATE_SETTLE_STEP_SECONDS, then sent as it is.
STATE_SETTLE_STEPS = 20
STATE_SETTLE_STEP_SECONDS = 0.05


def _query(scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _int(value: str | None, default: int, maximum: int) -> int:
    try:
        return max(0, min(int(value), maximum)) if value is not None else default
    except ValueError:
        return default


class StreamConsumer(AsyncWebsocketConsumer):
    """Accept, authorize, then run `produce()` and a sender in tasks of their own until either side closes."""

    # No channel layer: these consumers read Redis streams themselves, and a layer channel per socket would
    # only poll Redis for messages nobody sends.
    channel_layer_alias = "no-channel-layer"
    outbox_size = 1000
    hub: StreamHub | None = None
    subscription: Subscription | None = None

    async def connect(self):
        self.tasks: list[asyncio.Task] = []
        self.closing = False
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
        self.redis = stream_reader()
        self.spawn(self.produce())
        self.spawn(self.deliver())

    def spawn(self, coroutine: Coroutine) -> None:
        """Run `coroutine` in a task of this connection, ended by disconnect()."""
        if self.closing:
            # A task that outlived its cancellation (see disconnect) may not start another after the socket closed.
            coroutine.close()
            return
        self.tasks.append(asyncio.create_task(self._run(coroutine)))

    async def disconnect(self, code):
        self.closing = True
        pending = set(self.tasks)
        while pending:
            # redis-py can swallow a cancellation that lands just as a command completes, and the task then goes
            # on (a socket closed right after it opened left its health loop running for ever): ask again until
            # every task has ended.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1)
        # Only now: a task that went on after its first cancel may have subscribed meanwhile.
        if self.hub is not None:
            self.hub.unsubscribe(self.subscription)
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    async def _run(self, coroutine: Coroutine) -> None:
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

    async def send_replay(self, replay: Replay) -> None:
        # a replay waits for the client (it is what it asked for); only live lines may be dropped
        if replay.note is not None:
            await self.send_json(replay.note)
        for message in replay.messages:
            await self.send_json(message)

    async def follow_stream(self, key: str, render: Render, last_id: str) -> None:
        """Pass the stream's entries after `last_id` that this connection wants to the outbox, from the shared
        reader of the stream (berth.observe.hub)."""
        self.hub = StreamHub.get(key, render)
        self.subscription = Subscription(last_id, self.on_entry)
        await self.hub.subscribe(self.subscription)

    def on_entry(self, entry: Entry | None) -> None:
        if entry is None:
            self.outbox.close(code=1011)  # the shared reader failed: close rather than go silent
            return
        _, fields, text = entry
        if self.wants(fields):
            self.outbox.put(text)

    def wants(self, fields: dict[str, str]) -> bool:
        return True

    async def send_snapshots(self, key: str, message: Callable[[dict], dict]) -> None:
        """Every TICK_SECONDS, the newest snapshot of a series as `message(snapshot)`."""
        while True:
            snapshot = await latest_snapshot(self.redis, key)
            if snapshot is not None:
                self.outbox.put(json.dumps(message(snapshot)))
            await asyncio.sleep(TICK_SECONDS)

    async def receive(self, text_data=None, bytes_data=None):
        # These sockets only stream out. uvicorn closes a bigger message before reading it (ws_max_size, set by
        # berth.config.worker); this holds the same line under any other server.
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.BERTH_MAX_WS_MESSAGE_BYTES:
            await self.close(code=CLOSE_TOO_BIG)

    def authorize_app(self, user, name: str) -> None:
        self.app = app_for_user(user=user, name=name, min_role="viewer").name

    @property
    def follow(self) -> bool:
        # An addition to the contract for the CLI: `follow=0` replays and then closes (code 1000).
        return self.query.get("follow", "1") not in ("0", "false", "no")


class AppLogsConsumer(StreamConsumer):
    """/ws/apps/<app>/logs?tail=N&process=web: the last N lines, then live lines (through the app's StreamHub)."""

    def authorize(self, user) -> None:
        self.authorize_app(user, self.scope["url_route"]["kwargs"]["app"])

    def wants(self, fields: dict[str, str]) -> bool:
        return process_matches(fields, self.query.get("process"))

    async def produce(self) -> None:
        replay = await logs_replay(
            self.redis,
            app=self.app,
            asked=_int(self.query.get("tail"), DEFAULT_TAIL, MAX_TAIL_ASKED),
            process=self.query.get("process"),
        )
        await self.send_replay(replay)
        if not self.follow:
            self.outbox.close()
            return
        await self.follow_stream(logs_key(self.app), log_message, replay.last_id)


class BuildConsumer(StreamConsumer):
    """/ws/builds/<id>: every line of the build from the start, then live, then {"type": "end"} and close.

    No line is dropped here: a slow client only slows its own reader (the build log is bounded).
    """

    def authorize(self, user) -> None:
        self.build = build_for_user(
            user=user, build_id=self.scope["url_route"]["kwargs"]["build_id"], min_role="viewer"
        )

    async def produce(self) -> None:
        async for item in build_output(self.redis, self.build, block_ms=BLOCK_MS):
            match item:
                case LeftOut(count=left_out, sent=sent):
                    await self.send_json(replay_note(asked=None, sent=sent, left_out=left_out))
                case Line(text=text, more=more):
                    # `more`: a piece of a long line, the next line continues it
                    await self.send_json({"type": "line", "line": text, **({MORE: True} if more else {})})
                case End(status=status):
                    await self.send_json({"type": "end", "status": status})
                    self.outbox.close()


class AppEventsConsumer(StreamConsumer):
    """/ws/apps/<app>/events: the recent platform events, then live ones, and the app's health every few s."""

    def authorize(self, user) -> None:
        self.authorize_app(user, self.scope["url_route"]["kwargs"]["app"])

    async def produce(self) -> None:
        tail = _int(self.query.get("tail"), DEFAULT_EVENTS_TAIL, MAX_TAIL_ASKED)
        replay = await events_replay(self.redis, app=self.app, tail=tail)
        await self.send_replay(replay)
        if not self.follow:
            self.outbox.close()
            return
        self.spawn(
            self.send_snapshots(
                health_key(self.app), lambda snapshot: {"type": "health", "processes": snapshot["processes"]}
            )
        )
        await self.follow_stream(events_key(self.app), event_message, replay.last_id)


class NodesConsumer(StreamConsumer):
    """/ws/nodes: the swarm's nodes every few seconds, for platform admins (berth.nodes.selectors.can_see_nodes)."""

    def authorize(self, user) -> None:
        if not can_see_nodes(user):
            raise PermissionDenied("the nodes are shown to platform admins")

    async def produce(self) -> None:
        await self.send_snapshots(NODES_KEY, lambda snapshot: {"type": "nodes", "nodes": snapshot["nodes"]})


class AppStateConsumer(StreamConsumer):
    """/ws/apps/<app>/state: the app page's state (berth.live.app_state) on connect, then again each time it changes.

    Woken by the app's events (berth.deploys.events.app_event: release.live, scaled, ...) through the shared reader
    of its event stream, and every STATE_POLL_SECONDS for what has no event. Only the newest state matters: a client
    that falls behind loses older ones (the outbox keeps two). `follow=0` sends the state once and closes.
    """

    outbox_size = 2

    def authorize(self, user) -> None:
        self.app_row = app_for_user(
            user=user, name=self.scope["url_route"]["kwargs"]["app"], min_role="viewer"
        )
        self.app = self.app_row.name
        self.user = user
        # Not the shared sync thread (thread_sensitive): the state asks the container engine, which may be slow,
        # and every other socket's database call would wait behind it.
        self.read_state = DatabaseSyncToAsync(self._read_state, thread_sensitive=False)

    def _read_state(self) -> dict:
        return app_live_state(app=self.app_row, user=self.user)

    async def produce(self) -> None:
        self.changed = asyncio.Event()
        if self.follow:
            replay = await events_replay(self.redis, app=self.app, tail=0)
            await self.follow_stream(events_key(self.app), event_message, replay.last_id)
        sent = None
        while True:
            text = json.dumps(await self.settled_state(), sort_keys=True)
            if text != sent:
                self.outbox.put(text)
                sent = text
            if not self.follow:
                self.outbox.close()
                return
            try:
                await asyncio.wait_for(self.changed.wait(), STATE_POLL_SECONDS)
            except TimeoutError:
                pass
            self.changed.clear()

    async def settled_state(self) -> dict:
        for _ in range(STATE_SETTLE_STEPS):
            state = await self.read_state()
            if state["settled"]:
                break
            await asyncio.sleep(STATE_SETTLE_STEP_SECONDS)
        return state

    def on_entry(self, entry: Entry | None) -> None:
        if entry is None:
            self.outbox.close(code=1011)  # the shared reader failed: close rather than go stale
            return
        self.changed.set()
