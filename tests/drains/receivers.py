"""Drain receivers the drain tests start on 127.0.0.1: a syslog server over TCP or TLS reading RFC 6587 octet-counted
frames, and an HTTPS server taking logplex-framed POSTs; a self-signed certificate for `localhost` made with
`cryptography`. Each records the RFC 5424 messages it got, can be stopped and started again on the same port (a
drain that is down, then back), and stops with its test."""

import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.tls import loopback_certificate


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate (its own CA) for localhost and 127.0.0.1, and its key: (cert.pem, key.pem)."""
    return loopback_certificate(directory, common_name="localhost")


def octet_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete "<len> <msg>" frames at the start of `data`, and what is left (a frame not yet whole)."""
    frames = []
    while True:
        length, space, rest = data.partition(b" ")
        if not space or not length.isdigit() or len(rest) < int(length):
            return frames, data
        frames.append(rest[: int(length)])
        data = rest[int(length) :]


class SyslogReceiver:
    """A syslog server over TCP (TLS with `certificate`): one thread per connection, frames into `messages`."""

    def __init__(self, *, certificate: tuple[Path, Path] | None = None, port: int = 0):
        self.context = None
        if certificate is not None:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(*map(str, certificate))
        self.messages: list[str] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.port = port
        self.listener: socket.socket | None = None

    def start(self) -> "SyslogReceiver":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            if self.context is not None:
                conn.settimeout(10)
                conn = self.context.wrap_socket(conn, server_side=True)
            with self.lock:
                self.connections.append(conn)
            buffered = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                frames, buffered = octet_frames(buffered + data)
                with self.lock:
                    self.messages.extend(frame.decode() for frame in frames)
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def stop(self) -> None:
        """Close the listener and every connection: the drain is down (connections refused) until start()."""
        if self.listener is not None:
            try:
                # wakes the thread blocked in accept(); a close alone leaves the socket listening until it returns
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class HttpsReceiver:
    """An HTTPS server taking logplex POSTs: each request's headers, and its frames into `messages`."""

    def __init__(self, certificate: tuple[Path, Path], *, delay: float = 0.0):
        self.messages: list[str] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)  # a slow receiver
                frames, rest = octet_frames(body)
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "rest": rest})
                outer.messages.extend(frame.decode() for frame in frames)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*map(str, certificate))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "HttpsReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
