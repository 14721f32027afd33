"""Router access lines in an app's log: real requests through a real HAProxy (the router tests' fixture) to a real
backend, the per-request log socket read as the shipper's sampler reads it, the lines in the app's Redis log."""

import time

import httpx
import pytest
from berth.observe.services import logs_key
from berth.observe.traffic import ROUTER_PROCESS, Traffic, access_line, access_parse
from berth.routing.haproxy_router import HaproxyRouter
from berth.routing.router import Endpoint

from tests.conftest import free_port
from tests.support.backends import start_backend


@pytest.fixture
def backend():
    started = start_backend("a1", port=free_port())
    yield started
    started.stop()


def router_lines(rds, app: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in rds.xrange(logs_key(app))
        if fields.get(b"process") == ROUTER_PROCESS.encode()
    ]


def wait_lines(rds, app: str, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = router_lines(rds, app)
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    return router_lines(rds, app)


def test_an_access_line_is_written_per_request_heroku_style(router, backend, settings, rds, app_name):
    HaproxyRouter().apply(
        app=app_name, hostnames=["al.example.test"], endpoints=[Endpoint("127.0.0.1", backend.port)]
    )
    traffic = Traffic(paths=router.paths, admin_socket=settings.BERTH_ROUTER_ADMIN_SOCKET).start()
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{router.port}", headers={"Host": "AL.example.test"}
        ) as web:
            assert web.get("/hello/there?token=s3cret", timeout=10).status_code == 200
            assert web.post("/form", content=b"x", timeout=10).status_code in (200, 404, 405, 501)
            # over TLS (the router's default self-signed certificate: this test checks the log, not the chain)
            secure = httpx.get(
                f"https://127.0.0.1:{router.https_port}/tls",
                headers={"Host": "al.example.test"},
                verify=False,
                timeout=10,
            )
            assert secure.status_code == 200
            backend.stop()  # the app gone: the router answers 503 itself
            assert web.get("/down", timeout=10).status_code >= 500
        lines = wait_lines(rds, app_name, 4)
    finally:
        traffic.stop()
    assert len(lines) == 4
    first, second, tls, third = (entry["line"] for entry in lines)
    assert 'path="/tls"' in tls and tls.endswith(" protocol=https") and "status=200" in tls
    assert lines[0]["instance"] == "router" and lines[0]["stream"] == "router"
    assert first.startswith('at=info method=GET path="/hello/there" host=al.example.test request_id=')
    assert "status=200 " in first and " protocol=http" in first and "upstream=s" in first
    assert "connect=" in first and "service=" in first and "ms " in first
    assert "s3cret" not in first and "token" not in first  # the query string is never logged
    assert 'method=POST path="/form"' in second
    assert third.startswith("at=error code=") and 'path="/down"' in third and "status=50" in third
    request_ids = {line.split("request_id=")[1].split()[0] for line in (first, second, third)}
    assert len(request_ids) == 3 and "-" not in request_ids


def test_a_flood_of_requests_keeps_the_log_within_its_cap(
    router, backend, settings, rds, app_name, monkeypatch
):
    monkeypatch.setenv("BERTH_LOG_RETENTION_LINES", "100")
    HaproxyRouter().apply(
        app=app_name, hostnames=["fl.example.test"], endpoints=[Endpoint("127.0.0.1", backend.port)]
    )
    traffic = Traffic(paths=router.paths, admin_socket=settings.BERTH_ROUTER_ADMIN_SOCKET).start()
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{router.port}", headers={"Host": "fl.example.test"}
        ) as web:
            deadline = time.monotonic() + 60
            for number in range(1000):
                assert time.monotonic() < deadline
                web.get(f"/{'p' * 2000}/{number}", timeout=10)
        wait_lines(rds, app_name, 1000, timeout=3)  # bounded: the stream never holds them all
        written = traffic.request_log.access_written
    finally:
        traffic.stop()
    assert written >= 900  # lost datagrams aside, every request was written...
    # ...and the stream stays near its cap (MAXLEN ~ trims whole nodes of 100 entries)
    assert rds.xlen(logs_key(app_name)) <= 100 + 100
    longest = max(len(entry["line"]) for entry in router_lines(rds, app_name))
    assert longest < 1100  # a path is kept only up to its cap


def test_access_lines_parse_what_haproxy_escapes():
    fields = access_parse('app_007 502 12 0 11 230 -- 1 s4 GET 4f1c "h.example.test" "/a\\"b\\\\c"')
    assert fields["path"] == '/a"b\\c' and fields["host"] == "h.example.test"
    line = access_line(fields)
    assert line.startswith('at=error code=H500 desc="App error" method=GET path="/a\\"b\\\\c"')
    assert line.endswith("upstream=s4 protocol=https")
    timeout = access_line(access_parse('app_007 504 30000 0 -1 0 sH 0 s1 GET 1 "h" "/"'))
    assert timeout.startswith('at=error code=H12 desc="Request timeout"') and "service=- " in timeout
    assert access_parse("app_007 200 12") is None  # an old-format line: timing only
