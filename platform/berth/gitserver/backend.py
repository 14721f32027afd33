"""`git http-backend` as an asyncio child: the request body goes in by chunks, the CGI answer streams out.

Nothing is buffered whole in either direction, so a 500 MB push or clone costs a few chunks of memory, and hook
output (the build log of a push) reaches the pusher as it is written.
"""

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
HEAD_BYTES = 64 * 1024
STOP_GRACE_SECONDS = 5


class CgiError(Exception):
    """git http-backend did not answer with CGI headers."""


class PushTooLarge(Exception):
    def __init__(self, received: int, head: bytes):
        super().__init__(received)
        self.received = received
        self.head = head  # the start of the body, where git's commands are


@dataclass
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    # Idempotent; the body calls it when it ends or is closed, callers when they drop an unstarted body.
    stop: Callable[[], Awaitable[None]]


async def cgi_start(
    *,
    env: dict[str, str],
    read_body: Callable[[int], bytes],
    first_bytes: bytes = b"",
    body_limit: int | None = None,
    body_before_headers: bool = False,
    pass_fds: tuple[int, ...] = (),
) -> CgiResponse:
    """Start `git http-backend`, feed it the body, and return its status, headers and a body stream.

    With body_before_headers the whole body is fed (and counted against body_limit, raising PushTooLarge)
    before the answer starts, so an oversized push can still get its own status. This is safe for
    receive-pack, which answers only after reading everything. `pass_fds` stay open in the child (the hook's
    socket to the web process, berth.gitserver.relay).
    """
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        # Its own process group: stopping an abandoned request stops receive-pack and the hook with it.
        start_new_session=True,
        pass_fds=pass_fds,
    )
    feeder = asyncio.create_task(_feed(process, read_body, first_bytes, body_limit))
    errors = asyncio.create_task(_collect_stderr(process))
    try:
        if body_before_headers:
            await feeder
        status, headers = await _read_headers(process.stdout)
    except BaseException:
        await _stop(process, feeder, errors)
        raise
    stopped = asyncio.Lock()
    done = False

    async def stop() -> None:
        nonlocal done
        async with stopped:
            if not done:
                done = True
                await _stop(process, feeder, errors)

    return CgiResponse(status=status, headers=headers, body=_stream(process, stop), stop=stop)


async def _feed(process, read_body, first_bytes: bytes, limit: int | None) -> int:
    total = 0
    head = b""
    try:
        chunk = first_bytes
        while True:
            if not chunk:
                # Off the event loop: under WSGI this reads the client socket.
                chunk = await asyncio.to_thread(read_body, CHUNK)
                if not chunk:
                    break
            total += len(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            if limit is not None and total > limit:
                raise PushTooLarge(total, head)
            process.stdin.write(chunk)
            await process.stdin.drain()
            chunk = b""
    except (BrokenPipeError, ConnectionResetError):
        # The backend stopped reading: it refused the request and its answer says why.
        pass
    finally:
        process.stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await process.stdin.wait_closed()
    return total


async def _collect_stderr(process) -> bytes:
    kept = bytearray()
    while True:
        chunk = await process.stderr.read(CHUNK)
        if not chunk:
            return bytes(kept)
        kept = (kept + chunk)[-8192:]


async def _read_headers(stdout) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    size = 0
    while True:
        line = await stdout.readline()
        size += len(line)
        if not line or size > MAX_HEADER_BYTES:
            raise CgiError("git http-backend ended before its headers")
        line = line.rstrip(b"\r\n")
        if not line:
            return status, headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise CgiError(f"bad CGI header line {line[:100]!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            try:
                status = int(value.split()[0])
            except (ValueError, IndexError):
                raise CgiError(f"bad CGI status {value!r}") from None
        else:
            headers.append((name, value))


async def _stream(process, stop) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await process.stdout.read(CHUNK)
            if not chunk:
                break
            yield chunk
        await process.wait()
    finally:
        await stop()


async def _stop(process, feeder: asyncio.Task, errors: asyncio.Task) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if not feeder.done():
        feeder.cancel()
    with contextlib.suppress(BaseException):
        await feeder
    stderr = b""
    with contextlib.suppress(BaseException):
        stderr = await asyncio.wait_for(errors, STOP_GRACE_SECONDS)
    if process.returncode != 0 or stderr.strip():
        logger.warning(
            "git http-backend exited %s: %s", process.returncode, stderr.decode("utf-8", "replace").strip()
        )


# Under WSGI the view runs in an event loop that async_to_sync closes as soon as the view returns, but the
# child process and the body stream must outlive it. They run on this one long-lived loop instead.
_bridge_loop: asyncio.AbstractEventLoop | None = None
_bridge_lock = threading.Lock()


def bridge_loop() -> asyncio.AbstractEventLoop:
    global _bridge_loop
    with _bridge_lock:
        if _bridge_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="berth-git-backend", daemon=True).start()
            _bridge_loop = loop
    return _bridge_loop


async def on_bridge(awaitable: Awaitable):
    async def run():
        return await awaitable

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), bridge_loop()))


def iterate_on_bridge(response: CgiResponse) -> Iterator[bytes]:
    """A plain iterator (for WSGI) over a CGI body that lives on the bridge loop."""
    loop = bridge_loop()
    stream = response.body

    async def next_chunk():
        return await anext(stream)

    async def close():
        await stream.aclose()
        await response.stop()

    try:
        while True:
            try:
                chunk = asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=60)
