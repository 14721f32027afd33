"""Berth's HTTP readiness check, against small servers on loopback (no Docker needed)."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from berth.runtime.health import http_probe, http_ready


class StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (the stdlib's name)
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [200, 302, 404])
def test_any_status_below_500_is_ready(http_server, status):
    assert http_ready("127.0.0.1", http_server, f"/{status}", timeout=2)


def test_server_errors_are_not_ready_until_the_timeout(http_server):
    started = time.monotonic()
    assert not http_ready("127.0.0.1", http_server, "/503", timeout=1)
    assert 0.8 < time.monotonic() - started < 3
    assert http_probe("127.0.0.1", http_server, "/503") == 503


def test_closed_port_is_not_ready():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        assert not http_ready("127.0.0.1", port, timeout=0.5)


def test_accepted_then_dropped_connection_is_not_ready():
    # what Docker's proxy does on a published port when nothing in the container listens
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept_and_close():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                connection.close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    try:
        assert not http_ready("127.0.0.1", port, timeout=0.5)
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()


def test_a_server_that_comes_up_later_becomes_ready():
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))
    port = port_holder.getsockname()[1]
    port_holder.close()
    servers = []

    def start_later():
        time.sleep(0.5)
        server = ThreadingHTTPServer(("127.0.0.1", port), StatusHandler)
        servers.append(server)
        server.serve_forever()

    threading.Thread(target=start_later, daemon=True).start()
    try:
        assert http_ready("127.0.0.1", port, timeout=5)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
