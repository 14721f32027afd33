"""The router under keep-alive load: release cut-overs, a crashing endpoint and a restarted HAProxy.

Load comes from KeepAliveLoad (plain http.client, no client retries), so every failure a client could see counts.
"""

import shutil
import subprocess
import threading
import time

import httpx
import pytest
from berth.routing.haproxy import haproxy_command, write_config
from berth.routing.router import get_router

from tests.conftest import free_port, wait_for
from tests.routing.stats import sessions
from tests.support.backends import KeepAliveLoad, start_backend

# they kill and restart real processes (their own backends and HAProxy), and need no database: run once
pytestmark = pytest.mark.faults


@pytest.fixture
def backends():
    """Starts backend processes on free loopback ports: backends("a") → Backend; all stopped by PID afterwards."""
    started = []

    def start(ident: str, kind: str = "http"):
        backend = start_backend(ident, port=free_port(), kind=kind)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def get(port: int, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=10)


def test_release_cut_overs_under_keep_alive_load_drop_no_request(router, backends):
    router_ = get_router()
    current = backends("v1")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[current.endpoint])
    with KeepAliveLoad(
        port=router.port, host="demo.localhost", threads=4, duration=15, max_requests=60_000
    ) as load:
        load.wait_for_requests(200)
        for release in range(2, 7):
            new = backends(f"v{release}")
            router_.apply(
                app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], drain_timeout=10
            )
            cut_over = time.monotonic()
            current.stop()  # the old release goes away as soon as apply() has drained it
            current = new
            time.sleep(0.5)
        load.stop()
    print(f"\ncut-overs: 5, requests: {load.total}, failed: {len(load.failures)}")
    assert load.failures == []
    assert set(load.served_by(since=cut_over + 0.2)) == {"v6"}
    assert set(load.served_by()) == {f"v{n}" for n in range(1, 7)}


def test_requests_in_flight_to_an_endpoint_that_stops_listening_are_answered_after_it_is_marked_down(
    router, backends
):
    """A server shutting down gracefully refuses new connections first, so HAProxy's checks mark it down while it
    still answers the requests it has: it must be left to answer them. (HAProxy's on-marked-down shutdown-sessions
    cut them: a GET was sent again to the other server, its work done twice, a POST failed; and it cut a request
    between a dead server's refusal and its retry elsewhere.)"""
    router_ = get_router()
    leaving, staying = backends("leaving"), backends("staying")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[leaving.endpoint, staying.endpoint])
    answers: list = []

    def slow(method: str):
        try:
            response = httpx.request(
                method,
                f"http://127.0.0.1:{router.port}/slow?s=4",
                headers={"Host": "demo.localhost"},
                timeout=20,
            )
            answers.append((response.status_code, response.text))
        except httpx.HTTPError as exc:
            answers.append((None, repr(exc)))

    threads = [threading.Thread(target=slow, args=(method,)) for method in ("GET", "POST", "POST", "GET")]
    for thread in threads:
        thread.start()
    # the four in flight, two on each server (round robin), before one server stops listening: a fixed 0.5 s was
    # once too short on a loaded machine (a request sent after it went to the other server: 1 and 3)
    wait_for(lambda: sessions(router) == 4, timeout=10, message="the four requests in flight")
    httpx.get(f"http://127.0.0.1:{leaving.port}/stop-listening", timeout=5)
    wait_for(
        lambda: ("127.0.0.1", leaving.port, "DOWN") in router_.state()["demo"]["endpoints"],
        timeout=3,
        message="the endpoint that stopped listening to be marked DOWN",
    )
    for thread in threads:
        thread.join(timeout=25)
    assert sorted(answers) == [(200, "leaving")] * 2 + [(200, "staying")] * 2


def test_an_endpoint_killed_under_load_costs_no_request(router, backends):
    router_ = get_router()
    doomed, survivor = backends("doomed"), backends("survivor")
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[doomed.endpoint, survivor.endpoint])
    with KeepAliveLoad(
        port=router.port, host="demo.localhost", threads=4, duration=10, max_requests=40_000
    ) as load:
        load.wait_for_requests(300)
        doomed.kill()
        killed = time.monotonic()
        wait_for(
            lambda: ("127.0.0.1", doomed.port, "DOWN") in router_.state()["demo"]["endpoints"],
            timeout=5,
            message="the killed endpoint to be marked DOWN",
        )
        down_after = time.monotonic() - killed
        time.sleep(1)
        load.stop()
    print(
        f"\nkilled 1 of 2 endpoints: requests {load.total}, failed {len(load.failures)} {load.failures[:3]}, "
        f"marked DOWN after {down_after:.2f}s or less"
    )
    assert load.failures == []
    assert load.served_by()["doomed"] > 100
    assert load.served_by(since=killed)["survivor"] > 100


def _restart_haproxy(router, *, wipe: bool) -> subprocess.Popen:
    router.process.terminate()
    router.process.wait(timeout=10)
    if wipe:
        shutil.rmtree(router.paths.directory)
    paths = write_config(http_port=router.port)
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "Name: HAProxy" in _info(router), timeout=10, message="the restarted HAProxy")
    return process


def _info(router) -> str:
    from berth.routing.haproxy import admin_command

    try:
        return admin_command("show info")
    except OSError:
        return ""


@pytest.mark.parametrize("wipe", [False, True], ids=["router-dir-kept", "router-dir-wiped"])
def test_a_restarted_haproxy_gets_its_routes_back_from_sync(router, backends, wipe):
    demo, shop = backends("demo"), backends("shop")
    desired = {
        "demo": (["demo.localhost"], [demo.endpoint]),
        "shop": (["shop.localhost", "www.example.com"], [shop.endpoint]),
    }
    get_router().sync(desired)
    before = get_router().state()
    assert get_router().drifted() == []

    process = _restart_haproxy(router, wipe=wipe)
    try:
        # a fresh HAProxy has every server slot in maintenance: no app answers until sync
        assert get(router.port, "demo.localhost").status_code in (404, 503)
        assert get_router().drifted() == ([] if wipe else ["demo", "shop"])  # wiped: nothing known to compare
        get_router().sync(desired)
        assert get_router().drifted() == []
        assert get_router().state() == before
        assert get(router.port, "demo.localhost").text == "demo"
        assert get(router.port, "www.example.com").text == "shop"
        assert get(router.port, "nope.localhost").status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sync_removes_apps_that_are_no_longer_wanted(router, backends):
    demo, shop = backends("demo"), backends("shop")
    get_router().sync(
        {"demo": (["demo.localhost"], [demo.endpoint]), "shop": (["shop.localhost"], [shop.endpoint])}
    )
    get_router().sync({"shop": (["shop.localhost"], [shop.endpoint])}, drain_timeout=5)
    assert set(get_router().state()) == {"shop"}
    assert get(router.port, "demo.localhost").status_code == 404
    assert get(router.port, "shop.localhost").text == "shop"
