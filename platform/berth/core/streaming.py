"""Streaming responses that really stream under both servers.

Under ASGI, Django reads a plain (sync) iterator given to StreamingHttpResponse to its end before sending anything;
under WSGI it cannot consume an async one. Build output and one-off runs must reach the caller line by line.
"""

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async


def streamed(request, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    if not hasattr(request, "scope"):  # WSGI
        return chunks

    async def pieces() -> AsyncIterator[bytes]:
        done = object()
        # each read may block (Redis XREAD, Docker logs): run it in a thread of its own
        next_piece = sync_to_async(next, thread_sensitive=False)
        while (piece := await next_piece(chunks, done)) is not done:
            yield piece

    return pieces()
