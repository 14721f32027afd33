"""Streaming responses that really stream under both servers.

Under ASGI, Django reads a plain (sync) iterator given to StreamingHttpResponse to its end before sending anything;
under WSGI it cannot consume an async one. Build output and one-off runs must reach the caller line by line.

A blocking iterator (a one-off run's Docker log stream) is read in threads of a pool of its own
(BERTH_STREAM_THREADS), never in the event loop's default executor: that pool is what git pushes
(berth.gitserver) and asgiref's thread_sensitive=False calls need, and each open stream would hold one of its
threads for as long as the stream stays quiet. Readers that can wait on the event loop (build output:
redis.asyncio) do not come here at all.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def stream_executor() -> ThreadPoolExecutor:
    """The threads blocking stream readers wait in (one pool per web process)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.BERTH_STREAM_THREADS, thread_name_prefix="berth-stream"
            )
        return _executor


def streamed(request, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    if not hasattr(request, "scope"):  # WSGI
        return chunks

    async def pieces() -> AsyncIterator[bytes]:
        done = object()
        loop = asyncio.get_running_loop()
        while (piece := await loop.run_in_executor(stream_executor(), next, chunks, done)) is not done:
            yield piece

    return pieces()
