"""The log shipper: every line an app's containers print, into the app's Redis log stream, exactly once.

One thread follows each stream (stdout, stderr) of each running container labelled org.berth.app on this node's
Docker engine; Docker events attach new containers at once and a periodic scan catches whatever the events missed
(the shipper was down, the event stream broke). Docker keeps each line with a nanosecond timestamp; after every line
the shipper stores, in the same Redis transaction as the line, the cursor "<timestamp> <lines shipped at exactly that
timestamp>" per container and stream. On a restart it asks Docker for the lines since that second and skips what the
cursor says it already shipped, so nothing is written twice. If the line under the cursor is no longer in Docker's
log (rotated away while the shipper was down), lines may have been lost in between: a `gap` entry says so.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from berth.core.lines import MORE, byte_pieces, line_max_bytes, utf8_incomplete_tail
from berth.core.redis import redis_client
from berth.observe.services import log_entries_append, log_trim_all, logs_key, retention_lines
from berth.runtime.events import ContainerEvents
from berth.runtime.logs import ContainerGone, ContainerLogs, LogFollow
from berth.runtime.scheduler import LABEL_APP, LABEL_LOGGED_BY_RUNNER, LABEL_PROCESS

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
SCAN_INTERVAL = 10.0
TRIM_INTERVAL = 300.0
TASK_NAME_LABEL = "com.docker.swarm.task.name"
NS = 1_000_000_000

# Loops the floors above run inside the shipper's process (log drains' forwarder), to share its memory rather than
# add a process: each a callable that starts one and returns its stop. Registered from an AppConfig.ready, so this
# floor never imports the ones above it.
COMPANIONS: list[Callable[[], Callable[[], None]]] = []


def companion_register(start: Callable[[], Callable[[], None]]) -> None:
    if start not in COMPANIONS:
        COMPANIONS.append(start)


@dataclass(frozen=True)
class Target:
    """One container whose logs are shipped, with the names its lines carry."""

    container_id: str
    app: str
    process: str
    instance: str


def target_from_labels(container_id: str, labels: dict[str, str], name: str = "") -> Target | None:
    app = labels.get(LABEL_APP)
    if not app or labels.get(LABEL_LOGGED_BY_RUNNER) == "1":
        return None
    process = labels.get(LABEL_PROCESS) or "run"
    # Swarm names a task's container "<service>.<slot>.<task id>"; service names hold no dots (DNS labels).
    parts = labels.get(TASK_NAME_LABEL, "").split(".")
    slot = parts[1] if len(parts) == 3 else (name.lstrip("/") or container_id[:12])
    return Target(container_id=container_id, app=app, process=process, instance=f"{process}.{slot}")


def parse_docker_time(text: str) -> int:
    """Docker's RFC 3339 timestamp ("2026-11-27T21:30:00.123456789Z", trailing zeros trimmed) in ns since epoch.

    Integers, because Go drops trailing zeros of the fraction: the strings do not sort, and floats lose the ns.
    """
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1]
    elif text.endswith("+00:00"):
        text = text[:-6]
    whole, _, fraction = text.partition(".")
    seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * NS + int((fraction + "000000000")[:9])


def iso_from_ns(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{(ns % NS) // 1000:06d}Z"


class Follower(threading.Thread):
    """Ships one stream (stdout or stderr) of one container until it ends or the shipper stops."""

    def __init__(self, shipper: "Shipper", target: Target, stream: str):
        super().__init__(name=f"ship-{target.container_id[:12]}-{stream}", daemon=True)
        self.shipper = shipper
        self.target = target
        self.stream = stream
        self.cursor_field = f"{target.container_id}:{stream}"
        self.response: LogFollow | None = None

    def run(self) -> None:
        while not self.shipper.stopping.is_set():
            try:
                self.follow_once()
            except ContainerGone:
                return  # removed meanwhile (its lines went with it)
            except Exception as exc:  # a broken connection to Docker or Redis: resume from the cursor
                if self.shipper.stopping.is_set():
                    return
                if self._running():
                    logger.warning("following %s failed (%s); resuming", self.name, exc)
                self.shipper.stopping.wait(1.0)
            # Docker ends a follow when the container stops; it may also drop it. Resume while it runs.
            if not self._running():
                return

    def _running(self) -> bool:
        try:
            return self.shipper.container_running(self.target.container_id)
        except Exception:
            # the engine is unreachable (restarting: its containers stop with it); the scan attaches this one
            # again from its cursor if it still runs once the engine answers, so nothing is lost by ending here
            return False

    def close(self) -> None:
        response = self.response
        if response is not None:
            try:
                response.close()
            except Exception:  # already closed, or the socket is gone: nothing left to stop
                pass

    def follow_once(self) -> None:
        cursor = self.shipper.cursor_get(self.cursor_field)
        since = cursor[0] // NS if cursor and cursor[0] >= NS else None
        self.response = self.shipper.engine.follow(self.target.container_id, stream=self.stream, since=since)
        if self.shipper.stopping.is_set():
            self.close()
            return
        cursor_ns, skip = cursor if cursor else (0, 0)
        anchored = cursor is None
        partial = b""
        cap = line_max_bytes()
        for chunk in self.response:
            if self.shipper.stopping.is_set():
                return
            # One frame is one Docker log message "<ts> <text>\n". A line longer than Docker's 16 KiB buffer comes
            # as several messages, each with its own ts, only the last ending in a newline: they are joined and
            # shipped under the last message's ts (the cursor then skips all of them on a resume). A line that
            # grows past BERTH_LOG_LINE_MAX_BYTES (an app printing 100 MB without a newline) is shipped as it
            # grows, in pieces marked `more`, so what is held here stays below that size plus one message.
            for record in _records(chunk):
                stamp, _, text = record.partition(b" ")
                try:
                    ts = parse_docker_time(stamp.decode())
                except ValueError:
                    continue
                complete = text.endswith(b"\n")
                partial += text[:-1] if complete else text
                if not complete and len(partial) < cap:
                    continue
                if complete:
                    text, partial = partial, b""
                else:
                    # keep back a character Docker cut in two, so every piece decodes on its own
                    keep = utf8_incomplete_tail(partial)
                    text, partial = (partial[:-keep], partial[-keep:]) if keep else (partial, b"")
                if not anchored:
                    if ts < cursor_ns:
                        continue
                    anchored = True
                    if ts > cursor_ns:
                        self.shipper.gap(self.target, self.cursor_field, ts)
                        cursor_ns, skip = ts, 0
                if ts == cursor_ns and skip > 0:
                    skip -= 1
                    continue
                self.shipper.ship(self.target, self.stream, self.cursor_field, ts, text, more=not complete)


def _records(chunk: bytes) -> list[bytes]:
    # split on "\n" only (bytes.splitlines would also cut at a bare "\r", which progress bars print)
    parts = chunk.split(b"\n")
    records = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        records.append(parts[-1])
    return records


class Shipper:
    """Follows the logs of every app container on this node's Docker engine into Redis."""

    def __init__(
        self,
        *,
        engine: ContainerLogs | None = None,
        redis_conn: redis.Redis | None = None,
        only_labels: dict[str, str] | None = None,
    ):
        self.engine = engine or ContainerLogs()
        self.redis = redis_conn or redis_client()
        self.node = self.engine.node_name()
        self.cursor_key = f"berth:ship:cursors:{self.node}"
        self.stopping = threading.Event()
        self.followers: dict[str, Follower] = {}
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.events_stream: ContainerEvents | None = None
        self._cursors: dict[str, tuple[int, int]] = {}
        # `only_labels` narrows what is followed (tests follow only their own containers on a shared engine)
        self.label_filter = [LABEL_APP, *(f"{k}={v}" for k, v in (only_labels or {}).items())]

    # -- cursor and writes ------------------------------------------------------------------------------------

    def cursor_get(self, field: str) -> tuple[int, int] | None:
        raw = self.redis.hget(self.cursor_key, field)
        if not raw:
            self._cursors.pop(field, None)
            return None
        ts, _, count = raw.decode().partition(" ")
        cursor = (int(ts), int(count or 0))
        self._cursors[field] = cursor
        return cursor

    def ship(
        self, target: Target, stream: str, field: str, ts: int, text: bytes, *, more: bool = False
    ) -> None:
        """Append one line and move the cursor past it, atomically: a crash leaves both or neither.

        A line longer than BERTH_LOG_LINE_MAX_BYTES becomes several entries, written together, each but the last
        marked `more`; `more` marks the last too (the line goes on in the next call)."""
        cursor = self._cursors.get(field)
        count = cursor[1] + 1 if cursor and cursor[0] == ts else 1
        if not more:
            text = text.rstrip(b"\r")
        pieces = byte_pieces(text, line_max_bytes())
        base = {
            "ts": iso_from_ns(ts),
            "process": target.process,
            "instance": target.instance,
            "stream": stream,
        }
        with self.redis.pipeline(transaction=True) as pipe:
            for number, piece in enumerate(pieces, start=1):
                entry = {**base, "line": piece.decode("utf-8", errors="replace")}
                if more or number < len(pieces):
                    entry[MORE] = "1"
                pipe.xadd(logs_key(target.app), entry, maxlen=retention_lines(), approximate=True)
            pipe.hset(self.cursor_key, field, f"{ts} {count}")
            pipe.execute()
        self._cursors[field] = (ts, count)

    def gap(self, target: Target, field: str, ts: int) -> None:
        cursor = self._cursors.get(field)
        since = iso_from_ns(cursor[0]) if cursor else "?"
        message = (
            f"{target.instance} {field.rpartition(':')[2]}: lines printed between {since} and {iso_from_ns(ts)} "
            "may be missing (Docker no longer had them when the shipper resumed)"
        )
        log_entries_append(
            app=target.app,
            entries=[
                {
                    "ts": iso_from_ns(ts),
                    "process": target.process,
                    "instance": target.instance,
                    "stream": "gap",
                    "line": message,
                }
            ],
            client=self.redis,
        )
        logger.warning("gap in %s: %s", target.app, message)

    # -- containers -------------------------------------------------------------------------------------------

    def container_running(self, container_id: str) -> bool:
        return self.engine.running(container_id)

    def attach(self, target: Target) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            for stream in STREAMS:
                key = f"{target.container_id}:{stream}"
                follower = self.followers.get(key)
                if follower is not None and follower.is_alive():
                    continue
                follower = Follower(self, target, stream)
                self.followers[key] = follower
                follower.start()

    def scan(self) -> int:
        """Attach every running app container not yet followed; forget cursors of containers that are gone."""
        containers = self.engine.containers(labels=self.label_filter, running=True)
        for container in containers:
            target = target_from_labels(container.id, container.labels, container.name)
            if target:
                self.attach(target)
        existing = {c.id for c in self.engine.containers(labels=[LABEL_APP], running=False)}
        stale = [f for f in self.redis.hkeys(self.cursor_key) if f.decode().partition(":")[0] not in existing]
        if stale:
            self.redis.hdel(self.cursor_key, *stale)
        with self.lock:
            for key in [k for k, f in self.followers.items() if not f.is_alive()]:
                del self.followers[key]
        return len(containers)

    def watch_events(self) -> None:
        while not self.stopping.is_set():
            try:
                self.events_stream = self.engine.starts(labels=self.label_filter)
                if self.stopping.is_set():
                    return
                for event in self.events_stream:
                    target = target_from_labels(
                        event.container_id, event.attributes, event.attributes.get("name", "")
                    )
                    if target:
                        self.attach(target)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                logger.warning("Docker events broke (%s); reconnecting", exc)
                self.stopping.wait(1.0)

    def scan_loop(self, interval: float) -> None:
        last_trim = 0.0
        while not self.stopping.is_set():
            try:
                self.scan()
                if time.monotonic() - last_trim >= TRIM_INTERVAL:
                    log_trim_all(client=self.redis)
                    last_trim = time.monotonic()
            except Exception:
                logger.exception("log shipper scan failed")
            self.stopping.wait(interval)

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, *, scan_interval: float = SCAN_INTERVAL) -> "Shipper":
        # Events first, then the first scan: a container starting in between is caught by one or the other.
        for target, name in (
            (self.watch_events, "ship-events"),
            (lambda: self.scan_loop(scan_interval), "ship-scan"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.events_stream is not None:
            try:
                self.events_stream.close()
            except Exception:  # already closed
                pass
        with self.lock:
            followers = list(self.followers.values())
        for follower in followers:
            follower.close()
        deadline = time.monotonic() + timeout
        for thread in [*self.threads, *followers]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.engine.close()
