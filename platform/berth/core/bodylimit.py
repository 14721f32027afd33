"""Request bodies are capped at the ASGI door, before anything stores them.

Django's ASGIHandler reads a whole request body into a temporary file (spooled to disk past 2.5 MiB) before any
Django middleware or view runs, so a cap checked in a view comes after the disk has filled. This ASGI callable
wraps Django: it picks the cap of a request by its path, refuses an announced Content-Length over it without
calling Django, and counts a chunked body as Django reads it, stopping at the cap. Every refusal closes the
connection, so the server reads little more of the body either: a body that ends within LINGER_BYTES past the
cap is read to its end (and dropped) before the answer, so its client has sent it all and reads why.
"""

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

# A server that closes the connection while a body is still coming resets it, and the client may never read the
# answer it was sent (git: "RPC failed; curl 55 Send failure: Connection reset by peer" instead of why its push was
# refused). So past a cap, up to this much more is read and dropped, for up to LINGER_SECONDS, waiting for the
# body's end; a body further over is cut there, unread.
LINGER_BYTES = 4 * 1024 * 1024
LINGER_SECONDS = 5.0


def too_large_detail(limit: int, setting: str = "BERTH_MAX_REQUEST_BYTES") -> str:
    """The one wording of the refusal, also used by views that check Content-Length themselves."""
    return f"the request body is larger than {limit / 1024:g} KiB ({setting})"


@dataclass(frozen=True)
class BodyCap:
    """The body cap of the requests whose path matches `path`.

    With `app_answers`, the wrapped app says itself why a body is too large (git speaks its own protocol to a
    pusher): it gets the body cut one chunk past the cap, or only its first `head_bytes` when the announced
    Content-Length is already over, so it can tell and answer. Otherwise the door answers 413 by `json`
    (`{"detail": ...}`) or plain text.
    """

    path: re.Pattern
    limit: int
    setting: str
    json: bool = True
    app_answers: bool = False
    head_bytes: int = 64 * 1024


class BodyLimit:
    """ASGI middleware: caps the bodies of `http` requests by the first matching cap, else by `default`."""

    def __init__(self, app: Asgi, *, default: BodyCap, caps: Sequence[BodyCap] = ()):
        self.app, self.default, self.caps = app, default, tuple(caps)

    def cap_for(self, path: str) -> BodyCap:
        return next((cap for cap in self.caps if cap.path.fullmatch(path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap.limit and not cap.app_answers:
            await _refuse(send, cap)
            return
        gate = _Gate(cap, receive, send, declared=declared)
        await self.app(scope, gate.receive, gate.send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


async def _refuse(send: Send, cap: BodyCap) -> None:
    detail = too_large_detail(cap.limit, cap.setting)
    if cap.json:
        body, content_type = json.dumps({"detail": detail}).encode(), b"application/json"
    else:
        body, content_type = (detail + "\n").encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                # the rest of the body stays unread: the server closes rather than reading on to the next request
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Gate:
    """The `receive` and `send` one request's app sees: counts the body and stops it at the cap."""

    def __init__(self, cap: BodyCap, receive: Receive, send: Send, *, declared: int | None):
        self.cap, self._receive, self._send = cap, receive, send
        self.declared = declared
        # An app that answers for itself needs only the head of a body whose announced length is already over.
        self.head_only = declared is not None and declared > cap.limit
        self.received = 0
        self.cut = False  # the body was ended early for the app: what follows is never read
        self.refused = False  # the door answered 413 itself: the app's own answer is dropped
        self.started = False
        self.finished = asyncio.Event()

    async def receive(self) -> Message:
        if self.cut or self.refused:
            # Django asks again, for a disconnect, while it answers: the unread rest must not reach it.
            await self.finished.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        more = message.get("more_body", False)
        if self.head_only:
            if self.received < self.cap.head_bytes or not more:
                return message
        elif self.received <= self.cap.limit:
            return message
        if more:
            await self._linger()
        if self.cap.app_answers:
            # The app sees a body past its cap (or only the head of one announced past it) and says why.
            self.cut = True
            return {**message, "more_body": False}
        self.refused = True
        if not self.started:
            self.started = True
            await _refuse(self._send, self.cap)
        self.finished.set()
        return {"type": "http.disconnect"}

    async def _linger(self) -> None:
        """Read on and drop the rest of a body over its cap, when it ends within LINGER_BYTES past the cap (and
        LINGER_SECONDS)."""
        if self.declared is not None and self.declared > self.cap.limit + LINGER_BYTES:
            return  # announced further over: cut now
        loop = asyncio.get_running_loop()
        budget, deadline = self.cap.limit + LINGER_BYTES - self.received, loop.time() + LINGER_SECONDS
        while budget >= 0 and (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(self._receive(), left)
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if self.cut:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished.set()
