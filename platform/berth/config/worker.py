"""The gunicorn worker class of the web process: uvicorn with Berth's limits on what a client may send.

Run as `gunicorn berth.config.asgi:application -k berth.config.worker.BerthUvicornWorker`. Bodies are capped
inside the app (berth.core.bodylimit); what only the server sees is capped here: the request head and WebSocket
messages.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.workers import UvicornWorker

from berth.core import limits


class HeadCappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on a request's head (request line and headers).

    Neither httptools nor uvicorn bounds it (gunicorn's --limit-request-* apply only to its own workers), so a
    client could send headers until the worker runs out of memory. Past the cap the answer is 431 and the
    connection closes; the bytes of one read past it are all that is ever held.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_bytes = 0
        self.reading_head = True

    def data_received(self, data: bytes) -> None:
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if (
            self.reading_head
            and self.head_bytes > limits.MAX_HEADER_BYTES
            and not self.transport.is_closing()
        ):
            message = (
                f"request headers over {limits.MAX_HEADER_BYTES} bytes (BERTH_MAX_HEADER_BYTES)\n".encode()
            )
            self.transport.write(
                STATUS_LINE[431]
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message)
                + message
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # the next request on this connection starts its own head
        self.reading_head, self.head_bytes = True, 0


class BerthUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": HeadCappedHttpToolsProtocol,
        # uvicorn's default is 16 MiB; a bigger message is closed with 1009 before it is read.
        "ws_max_size": limits.MAX_WS_MESSAGE_BYTES,
    }
