"""`berth logs --source router`: real requests through a real HAProxy to a real backend, their access lines read from
the router's request-log socket into the app's log, printed by the CLI from a real web process over its WebSocket."""

import argparse
import time

import httpx
import pytest
from berth.cli.logs import logs
from berth.observe.services import log_entries_append
from berth.observe.traffic import Traffic
from berth.routing.haproxy_router import HaproxyRouter
from berth.routing.router import Endpoint

from tests.conftest import free_port
from tests.observe.webserver import start_web
from tests.support.backends import start_backend

APP = "obs-access-cli"


@pytest.fixture
def web(tmp_path_factory, rds, monkeypatch):
    from django.conf import settings

    rds.delete(f"berth:logs:{APP}", f"berth:events:{APP}")
    server = start_web(tmp_path_factory.mktemp("web-home"), redis_url=settings.REDIS_URL, apps=[APP])
    monkeypatch.setenv("BERTH_URL", server.url)
    monkeypatch.setenv("BERTH_TOKEN", server.tokens["ada"])
    try:
        yield server
    finally:
        server.stop()
        rds.delete(f"berth:logs:{APP}", f"berth:events:{APP}")


def namespace(**values) -> argparse.Namespace:
    return argparse.Namespace(
        **{"app": APP, "tail": False, "num": 100, "process": None, "source": None, "json": False, **values}
    )


def test_berth_logs_source_router_prints_the_access_lines(router, web, settings, rds):
    backend = start_backend("c1", port=free_port())
    HaproxyRouter().apply(
        app=APP, hostnames=["cli.example.test"], endpoints=[Endpoint("127.0.0.1", backend.port)]
    )
    traffic = Traffic(paths=router.paths, admin_socket=settings.BERTH_ROUTER_ADMIN_SOCKET).start()
    try:
        log_entries_append(
            app=APP,
            entries=[
                {
                    "ts": "2026-12-05T08:00:00.000000Z",
                    "process": "web",
                    "instance": "web.1",
                    "stream": "stdout",
                    "line": "app says hi",
                }
            ],
        )
        for path in ("/one", "/two"):
            response = httpx.get(
                f"http://127.0.0.1:{router.port}{path}", headers={"Host": "cli.example.test"}, timeout=10
            )
            assert response.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and rds.xlen(f"berth:logs:{APP}") < 3:
            time.sleep(0.1)
    finally:
        traffic.stop()
        backend.stop()
    _, text = logs(namespace(source="router"))
    lines = text.splitlines()
    assert len(lines) == 2 and all(" router[router]: at=info method=GET path=" in line for line in lines)
    assert 'path="/one"' in lines[0] and 'path="/two"' in lines[1] and "status=200" in lines[1]
    _, everything = logs(namespace())
    assert "web[web.1]: app says hi" in everything and len(everything.splitlines()) == 3
