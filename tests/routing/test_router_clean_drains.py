"""A cut-over's drained server waits for its process to stop before it is retired (apply(retire_idle=False)).

Retiring a server (maintenance) makes HAProxy close the idle keep-alive connections it pools for it, with a reset
the app reads as ConnectionResetError; the process closing them as it stops is clean. The end-to-end count is in
tests/e2e/test_clean_drains.py; here the router's part against real HAProxy and real backend processes.
"""

import json

import pytest
from berth.routing.haproxy import admin_command
from berth.routing.router import get_router

from tests.conftest import free_port, wait_for
from tests.support.backends import start_backend

pytestmark = pytest.mark.faults  # real processes started and stopped, no database


@pytest.fixture
def backends():
    started = []

    def start(ident: str):
        backend = start_backend(ident, port=free_port())
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def endpoints(router_) -> list[tuple[str, int, str]]:
    return sorted(router_.state()["demo"]["endpoints"])


def test_a_drained_server_stays_out_of_rotation_until_its_process_stops(router, backends):
    router_ = get_router()
    old, new = backends("old"), backends("new")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], retire_idle=False)
    assert endpoints(router_) == sorted([("127.0.0.1", old.port, "DRAIN"), ("127.0.0.1", new.port, "UP")])
    # the watcher's reconcile meanwhile (a plain apply) leaves it to its process too
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint])
    assert ("127.0.0.1", old.port, "DRAIN") in endpoints(router_)
    slots = json.loads(router.paths.slots.read_text())
    assert [entry[:2] for entry in slots["stopping"].values()] == [["127.0.0.1", old.port]]

    old.stop()  # Swarm removing the old release: its process closes its connections and exits
    wait_for(
        lambda: any(port == old.port and "DOWN" in status for _, port, status in endpoints(router_)),
        timeout=10,
        message="the stopped process's server marked down",
    )
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint])
    assert endpoints(router_) == [("127.0.0.1", new.port, "UP")]
    assert json.loads(router.paths.slots.read_text())["stopping"] == {}


def test_a_removed_app_does_not_wait_for_its_processes(router, backends):
    router_ = get_router()
    old, new = backends("old"), backends("new")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], retire_idle=False)
    backend = json.loads(router.paths.slots.read_text())["apps"]["demo"]["backend"]
    router_.remove(app="demo", drain_timeout=5)
    assert router_.state() == {}
    assert "demo" not in json.loads(router.paths.slots.read_text())["apps"]
    assert f"{backend} 1 s1 127.0.0.1 0 5 " in admin_command(f"show servers state {backend}")  # maint again
