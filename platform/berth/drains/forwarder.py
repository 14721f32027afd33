"""The drain forwarder: a loop inside the log shipper's process (ship_logs) that sends each drain the lines of its
app's log stream from the drain's cursor on, and advances the cursor when the receiver accepted them. The loop
finds the drains that are due; SENDING_THREADS threads send, one batch of a drain at a time, so a receiver that is
slow or swallows connections holds up its own drain only.

One forwarder sends for the whole installation at a time: it holds a Redis lease (renewed each pass), so a
cluster running one shipper per node sends each line once. A drain that fails is retried with backoff (0.5 s,
1 s, 2 s… up to BERTH_DRAINS_MAX_BACKOFF seconds) from the same cursor; nothing is lost while the stream still
holds the lines (BERTH_LOG_RETENTION_LINES per app), and what its cap trims before delivery is counted as dropped.
Delivery is at least once: a batch the receiver took but did not acknowledge (a connection cut mid-batch) is sent
again.
"""

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

import redis
from django.db import close_old_connections, connections

from berth.core.env import env_int
from berth.core.redis import redis_client
from berth.drains import selectors, services
from berth.drains.models import Drain
from berth.drains.transport import Sender, octet_frame, sender_for, syslog_message
from berth.observe.services import as_text, logs_key

logger = logging.getLogger(__name__)

LEASE_KEY = "berth:drains:forwarder"
LEASE_SECONDS = 15
BATCH_LINES = 500
BATCHES_PER_PASS = 20  # per drain and pass: one busy drain does not starve the others
RELOAD_SECONDS = 3.0  # drains added or removed are seen within this
# drains sent to at once: a receiver that is slow or swallows connections (up to the 5 s connect and 10 s send
# timeouts) holds one of these, not the others' lines; each holds a database connection while it works
SENDING_THREADS = 4
SEND_JOIN_SECONDS = 16  # a send under way ends within its connect and send timeouts


def max_backoff() -> float:
    return float(env_int("BERTH_DRAINS_MAX_BACKOFF", 10, minimum=1, maximum=3600))


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Forwarder:
    """Sends every drain its app's new log lines, in a thread, until stopped."""

    def __init__(
        self, *, interval: float = 0.5, redis_conn: redis.Redis | None = None, lease_key: str = LEASE_KEY
    ):
        self.interval = interval
        self.redis = redis_conn or redis_client()
        self.lease_key = lease_key
        self.lease_token = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="drain-forwarder", daemon=True)
        self.drains: list[Drain] = []
        self.loaded_at = 0.0
        self.senders: dict[int, tuple[str, Sender]] = {}
        self.failures: dict[int, int] = {}
        self.retry_at: dict[int, float] = {}
        # drains waiting for or being sent to, by id: at most one send of a drain at a time (its cursor is one)
        self.sending: set[int] = set()
        self.due: queue.Queue[Drain] = queue.Queue()
        self.senders_threads = [
            threading.Thread(target=self.send_loop, name=f"drain-send-{n}", daemon=True)
            for n in range(SENDING_THREADS)
        ]

    def start(self) -> "Forwarder":
        for thread in self.senders_threads:
            thread.start()
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in [self.thread, *self.senders_threads]:
            thread.join(max(0.1, deadline - time.monotonic()))

    # -- the loop ---------------------------------------------------------------------------------------------

    def lease(self) -> bool:
        """Take or renew the installation's forwarding lease; False while another process holds it."""
        if self.redis.set(self.lease_key, self.lease_token, nx=True, ex=LEASE_SECONDS):
            return True
        if as_text(self.redis.get(self.lease_key) or b"") == self.lease_token:
            self.redis.expire(self.lease_key, LEASE_SECONDS)
            return True
        return False

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    close_old_connections()
                    if self.lease():
                        self.forward_all()
                except Exception:  # Redis or the database down: try again next pass
                    logger.exception("drain forwarder pass failed")
                self.stopping.wait(self.interval)
        finally:
            for thread in self.senders_threads:
                thread.join(SEND_JOIN_SECONDS)
            for _url, sender in list(self.senders.values()):
                sender.close()
            if as_text(self.redis.get(self.lease_key) or b"") == self.lease_token:
                self.redis.delete(self.lease_key)
            connections.close_all()  # this thread's own connections (Django keeps one per thread)

    def forward_all(self) -> None:
        """Start sending to every drain that is due and not already being sent to (a sending thread takes it)."""
        if time.monotonic() - self.loaded_at >= RELOAD_SECONDS:
            # a drain already known keeps its object: a send in flight moves its cursor there
            known = {drain.pk: drain for drain in self.drains}
            self.drains = [known.get(drain.pk, drain) for drain in selectors.drains_all()]
            self.loaded_at = time.monotonic()
            for gone in set(self.senders) - {d.pk for d in self.drains}:
                self.senders.pop(gone)[1].close()
        for drain in self.drains:
            if self.stopping.is_set():
                return
            if drain.pk in self.sending or time.monotonic() < self.retry_at.get(drain.pk, 0.0):
                continue
            self.sending.add(drain.pk)
            self.due.put(drain)

    def send_loop(self) -> None:
        """A sending thread: forwards the drains put in `due`, one at a time, until the forwarder stops."""
        try:
            while not self.stopping.is_set():
                try:
                    drain = self.due.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    close_old_connections()
                    self.forward(drain)
                except Exception:  # Redis or the database down: this drain is tried again next pass
                    logger.exception("drain #%s: forwarding failed", drain.pk)
                finally:
                    self.sending.discard(drain.pk)
        finally:
            connections.close_all()  # this thread's own connections

    # -- one drain --------------------------------------------------------------------------------------------

    def sender(self, drain: Drain) -> Sender:
        kept = self.senders.get(drain.pk)
        if kept is None or kept[0] != drain.url:
            if kept is not None:
                kept[1].close()
            kept = (drain.url, sender_for(url=drain.url, token=drain.token))
            self.senders[drain.pk] = kept
        return kept[1]

    def read(self, drain: Drain) -> list:
        """The next batch after the drain's cursor, having counted the lines the stream's cap trimmed past the
        cursor (they can no longer be sent). Both from one MULTI/EXEC: the count is right only if nothing is added
        or trimmed between reading the stream's counters and reading its lines."""
        key = logs_key(drain.app.name)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(key)
            pipe.xrange(key, min=f"({drain.cursor}", max="+", count=BATCH_LINES)
            info, entries = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):
            if "no such key" not in str(info).lower():
                raise info
            return []  # no log yet
        if isinstance(entries, Exception):
            raise entries
        added = int(info.get("entries-added") or 0)
        if added < drain.added_at_cursor:
            services.drain_stream_reset(drain=drain)  # the stream was deleted and begun again
            return []
        first = info.get("first-entry")
        if first and _id(as_text(first[0])) > _id(drain.cursor):
            # every entry still in the stream is past the cursor: those added past it and no longer there are lost
            lost = added - drain.added_at_cursor - int(info.get("length") or 0)
            if lost > 0:
                services.drain_lost_record(drain=drain, lost=lost)
        return entries

    def forward(self, drain: Drain) -> int:
        """Send the drain what follows its cursor (up to BATCHES_PER_PASS batches); the lines delivered."""
        sent = 0
        for _ in range(BATCHES_PER_PASS):
            entries = self.read(drain)
            if not entries:
                break
            frames = [
                octet_frame(
                    syslog_message(
                        app=drain.app.name, fields={as_text(k): as_text(v) for k, v in fields.items()}
                    )
                )
                for _, fields in entries
            ]
            try:
                self.sender(drain).send(frames)
            except (
                Exception
            ) as exc:  # the receiver down, refused, or answering an error: retry from the cursor
                failures = self.failures.get(drain.pk, 0) + 1
                self.failures[drain.pk] = failures
                self.retry_at[drain.pk] = time.monotonic() + min(max_backoff(), 0.5 * 2 ** (failures - 1))
                services.drain_failure_record(drain=drain, error=f"{type(exc).__name__}: {exc}")
                logger.warning("drain #%s of %s failed (%s); retrying", drain.pk, drain.app.name, exc)
                break
            self.failures.pop(drain.pk, None)
            self.retry_at.pop(drain.pk, None)
            services.drain_delivered_record(drain=drain, cursor=as_text(entries[-1][0]), count=len(entries))
            sent += len(entries)
            if len(entries) < BATCH_LINES:
                break
        return sent


def forwarder_start() -> Callable[[], None]:
    """Start the forwarder (the shipper's process calls this); returns its stop."""
    forwarder = Forwarder().start()
    return forwarder.stop
