"""app.json's startup checks (Dokku's form) as the roll-out runs them, against a small server on loopback."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from berth.runtime.health import startup_check


class Ready(BaseHTTPRequestHandler):
    """/ready answers 503 for the first `fail_first` requests, then 200 "database: ok"; /redirect answers 302."""

    def do_GET(self):  # noqa: N802  (the stdlib's name)
        self.server.requests += 1
        if self.path == "/redirect":
            status, body = 302, b""
        elif self.server.requests <= self.server.fail_first:
            status, body = 503, b"starting"
        else:
            status, body = 200, b"database: ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    httpd.requests, httpd.fail_first = 0, 0
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _check(port, **fields):
    return startup_check(
        "127.0.0.1", port, **{"path": "/ready", "attempts": 3, "timeout": 1, "wait": 0, **fields}
    )


def test_a_check_passes_once_an_attempt_answers_within_its_attempts(server):
    server.fail_first = 2
    assert _check(server.server_address[1]) == (True, "status 200")
    assert server.requests == 3


def test_a_check_fails_after_its_attempts_saying_what_the_last_one_got(server):
    server.fail_first = 5
    started = time.monotonic()
    assert _check(server.server_address[1], wait=0.2) == (False, "status 503")
    assert server.requests == 3
    assert 0.35 < time.monotonic() - started < 2  # two waits between three attempts


def test_a_check_wants_its_content_in_the_body(server):
    port = server.server_address[1]
    assert _check(port, content="database: ok")[0]
    assert _check(port, content="cache: ok") == (False, "status 200 without 'cache: ok' in the body")


def test_a_redirect_passes_and_nothing_listening_fails(server):
    assert _check(server.server_address[1], path="/redirect") == (True, "status 302")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert _check(sock.getsockname()[1], attempts=2) == (False, "nothing answered HTTP")


def test_the_initial_delay_comes_before_the_first_attempt_and_a_task_gone_stops_the_check(server):
    started = time.monotonic()
    assert _check(server.server_address[1], initial_delay=0.3)[0]
    assert time.monotonic() - started >= 0.3
    assert _check(server.server_address[1], still_worth_it=lambda: False) == (False, "no attempt")
    assert server.requests == 1
