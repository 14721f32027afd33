"""Real backends and keep-alive load for the router's tests (tests/routing) and benchmark (bench/router_overhead.py);
test equipment, so it lives with the tests, not in the shipped package.

`python -m tests.support.backends http|ws <id> <port>` (from the repository's root) serves on 127.0.0.1:<port>:
`http` answers every request with its id over HTTP/1.1 keep-alive (/slow?s=2 answers after 2 s; /drop hangs up
without an answer and /dropped says how many times it did), `ws` echoes WebSocket messages as "<id>:<message>".
"""

import collections
import http.client
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from berth.routing.router import Endpoint

REPO_DIR = Path(__file__).resolve().parents[2]  # where `python -m tests.support.backends` finds `tests`


@dataclass
class Backend:
    """A backend process on 127.0.0.1 that the test started (and so may stop, by its PID)."""

    ident: str
    port: int
    process: subprocess.Popen

    @property
    def endpoint(self) -> "Endpoint":
        # imported here, not at the top: the backend processes run this module with only the repository's root on
        # their path (no platform/, no Django settings), and they never need an Endpoint
        from berth.routing.router import Endpoint

        return Endpoint("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def kill(self) -> None:
        """Die the way a crashed app does: at once, its connections reset by the kernel."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)


def start_backend(ident: str, *, port: int, kind: str = "http", timeout: float = 10.0) -> Backend:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.backends", kind, ident, str(port)],
        cwd=REPO_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    backend = Backend(ident=ident, port=port, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"backend {ident} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return backend
        except OSError:
            time.sleep(0.02)
    backend.stop()
    raise RuntimeError(f"backend {ident} did not listen on port {port} within {timeout}s")


class KeepAliveLoad:
    """Threads sending GETs through the router over keep-alive connections, bounded in time and in count.

    Every answer is recorded as (time, body) or counted as a failure; a failure is any exception or non-200
    answer, with no retry by the client, so the count is what a plain client would have seen.
    """

    def __init__(
        self,
        *,
        port: int,
        host: str,
        threads: int = 4,
        duration: float = 10.0,
        max_requests: int = 50_000,
        path: str = "/",
        pause: float = 0.0,
    ):
        self.port, self.host, self.path = port, host, path
        self.duration, self.max_requests = duration, max_requests
        # seconds each client waits between requests: a paced client's connection sits idle most of the time, as a
        # browser's does, which is when a reload's old worker may close it
        self.pause = pause
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "KeepAliveLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.duration + 15)

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failures)

    def served_by(self, since: float = 0.0) -> collections.Counter:
        with self._lock:
            return collections.Counter(body for at, body in self.answers if at >= since)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.total
        while self.total - start < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        connection = None
        while (
            not self._stop.wait(self.pause) and time.monotonic() < deadline and self.total < self.max_requests
        ):
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", self.path, headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read().decode(errors="replace")
                with self._lock:
                    if response.status == 200:
                        self.answers.append((time.monotonic(), body))
                    else:
                        self.failures.append(f"HTTP {response.status}: {body[:80]}")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


def _serve_http(ident: str, port: int) -> None:
    body = ident.encode()
    dropped = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        # the whole answer in one write (flushed after each request), as most servers send a small answer;
        # in two writes Nagle would hold the second for a delayed ACK (40 ms)
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
            if url.path == "/stop-listening":
                # a graceful shutdown's first step (gunicorn's or uvicorn's on SIGTERM): new connections are
                # refused, the requests in flight still get their answers
                threading.Thread(target=self.server.stop_listening, daemon=True).start()
            if url.path == "/drop":  # read the request, then hang up without an answer
                dropped[0] += 1
                self.close_connection = True
                return
            answer = str(dropped[0]).encode() if url.path == "/dropped" else body
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_HEAD = do_GET

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512

        def handle_error(self, request, client_address):
            pass  # HAProxy's L4 checks reset their connections; that is no error

        def stop_listening(self):
            self.shutdown()  # serve_forever returns: nothing more is accepted
            self.socket.close()

    Server(("127.0.0.1", port), Handler).serve_forever()
    time.sleep(
        60
    )  # stopped listening: the requests in flight finish on their threads (bounded; stop() ends it)


def _serve_websocket(ident: str, port: int) -> None:
    from websockets.sync.server import serve

    logging.basicConfig(level=logging.CRITICAL)  # L4 checks fail the handshake by design

    def echo(websocket):
        for message in websocket:
            websocket.send(f"{ident}:{message}")

    with serve(echo, "127.0.0.1", port) as server:
        server.serve_forever()


if __name__ == "__main__":
    kind, ident, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"http": _serve_http, "ws": _serve_websocket}[kind](ident, port)
