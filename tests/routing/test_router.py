"""The router: HAProxy in master-worker mode with an admin socket, a Berth 404 for unknown hosts, and the Router
seam (apply/remove/state) changing it at run time, tested against real HAProxy and real backend processes."""

import concurrent.futures
import json
import socket
import subprocess
import threading
import time

import httpx
import pytest
from berth.routing.haproxy import admin_command, write_config
from berth.routing.haproxy_router import HaproxyRouter
from berth.routing.memory import InMemoryRouter
from berth.routing.router import Endpoint, get_router
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from tests.conftest import NO_TLS, free_port, wait_for
from tests.routing.stats import sessions
from tests.support.backends import start_backend


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


def get(router, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{router.port}{path}", headers={"Host": host}, timeout=10, verify=NO_TLS
    )


def test_rendered_configuration_is_valid_for_haproxy(tmp_path, settings):
    paths = write_config(http_port=18080, directory=tmp_path)
    result = subprocess.run(["haproxy", "-c", "-f", str(paths.config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_unknown_host_gets_the_berth_404_page(router):
    response = httpx.get(f"http://127.0.0.1:{router.port}/", headers={"Host": "nope.localhost"})
    assert response.status_code == 404
    assert "No such app" in response.text


def test_admin_socket_answers_runtime_commands(router):
    assert "Name: HAProxy" in admin_command("show info")
    assert "app_001" in admin_command("show servers state app_001")


def test_get_router_gives_the_haproxy_router_by_default(router):
    assert isinstance(get_router(), HaproxyRouter)


def test_apply_routes_a_host_to_its_app(router, backends):
    demo, other = backends("demo-1"), backends("other-1")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[demo.endpoint])
    router_.apply(app="other", hostnames=["other.localhost"], endpoints=[other.endpoint])

    assert get(router, "demo.localhost").text == "demo-1"
    assert get(router, "other.localhost").text == "other-1"
    assert get(router, "DEMO.localhost:8080").text == "demo-1"  # Host is matched lower-cased, port ignored
    assert get(router, "third.localhost").status_code == 404


def test_custom_domains_route_to_the_same_app_and_can_be_taken_away(router, backends):
    demo = backends("demo-1")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost", "WWW.Example.COM"], endpoints=[demo.endpoint])
    assert get(router, "www.example.com").text == "demo-1"

    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[demo.endpoint])
    assert get(router, "www.example.com").status_code == 404
    assert get(router, "demo.localhost").text == "demo-1"


def test_a_hostname_claimed_by_another_app_moves_to_it(router, backends):
    first, second = backends("first"), backends("second")
    router_ = get_router()
    router_.apply(app="one", hostnames=["shop.example.com"], endpoints=[first.endpoint])
    router_.apply(app="two", hostnames=["shop.example.com"], endpoints=[second.endpoint])
    assert get(router, "shop.example.com").text == "second"
    assert router_.state()["one"]["hostnames"] == []


def test_requests_are_spread_round_robin_over_endpoints(router, backends):
    started = [backends(f"web-{n}") for n in range(3)]
    get_router().apply(app="demo", hostnames=["demo.localhost"], endpoints=[b.endpoint for b in started])
    answers = [get(router, "demo.localhost").text for _ in range(30)]
    assert {answer: answers.count(answer) for answer in answers} == {"web-0": 10, "web-1": 10, "web-2": 10}


def test_scale_up_and_down(router, backends):
    router_ = get_router()
    web = [backends(f"web-{n}") for n in range(4)]
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web[0].endpoint])
    assert {get(router, "demo.localhost").text for _ in range(8)} == {"web-0"}

    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[b.endpoint for b in web])
    assert {get(router, "demo.localhost").text for _ in range(16)} == {"web-0", "web-1", "web-2", "web-3"}

    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web[2].endpoint], drain_timeout=5)
    assert {get(router, "demo.localhost").text for _ in range(8)} == {"web-2"}
    assert router_.state()["demo"]["endpoints"] == [("127.0.0.1", web[2].port, "UP")]
    assert router_.routed_endpoints(app="demo") == {web[2].endpoint}
    assert router_.routed_endpoints(app="nobody") == set()


def test_apply_is_idempotent(router, backends):
    router_ = get_router()
    web = [backends(f"web-{n}") for n in range(2)]
    for _ in range(3):
        router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[b.endpoint for b in web])
    state = router_.state()["demo"]
    assert state["hostnames"] == ["demo.localhost"]
    assert sorted(state["endpoints"]) == sorted(("127.0.0.1", b.port, "UP") for b in web)
    assert admin_command(f"show map {router.paths.hosts_map}").count("demo.localhost") == 1


def test_state_is_read_back_from_haproxy(router, backends):
    web = backends("web")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["b.localhost", "a.localhost"], endpoints=[web.endpoint])
    assert router_.state() == {
        "demo": {"hostnames": ["a.localhost", "b.localhost"], "endpoints": [("127.0.0.1", web.port, "UP")]}
    }
    # what HAProxy reports, not what Berth asked for: a server put in maintenance by hand disappears
    backend = json.loads(router.paths.slots.read_text())["apps"]["demo"]["backend"]
    # a second app: every backend is read with one command, each app's servers are its own
    shop = backends("shop")
    router_.apply(app="shop", hostnames=["shop.localhost"], endpoints=[shop.endpoint])
    assert router_.applied_routes() == {
        "demo": ({"a.localhost", "b.localhost"}, {web.endpoint}),
        "shop": ({"shop.localhost"}, {shop.endpoint}),
    }
    assert router_.drifted() == []
    admin_command(f"set server {backend}/s1 state maint")
    assert router_.state()["demo"]["endpoints"] == []
    assert router_.state()["shop"]["endpoints"] == [("127.0.0.1", shop.port, "UP")]
    assert router_.drifted() == ["demo"]

    # a cut-over leaves the old server draining until its process stops: not as last applied until an apply (the
    # watcher's full round) finds it down and retires it
    shop_v2 = backends("shop-v2")
    router_.apply(app="shop", hostnames=["shop.localhost"], endpoints=[shop_v2.endpoint], retire_idle=False)
    assert "shop" in router_.drifted()
    shop.stop()
    deadline = time.monotonic() + 20
    while "shop" in router_.drifted():
        assert time.monotonic() < deadline, router_.state()["shop"]
        router_.apply(app="shop", hostnames=["shop.localhost"], endpoints=[shop_v2.endpoint], wait=False)
        time.sleep(0.5)
    assert router_.state()["shop"]["endpoints"] == [("127.0.0.1", shop_v2.port, "UP")]


def test_the_hosts_map_on_disk_follows_every_change(router, backends):
    web = backends("web")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost", "www.example.com"], endpoints=[web.endpoint])
    lines = router.paths.hosts_map.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == ["demo.localhost", "www.example.com"]
    router_.remove(app="demo")
    assert router.paths.hosts_map.read_text() == ""


def test_remove_unmaps_the_app_and_frees_its_backend_slot(router, backends):
    web = backends("web")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[web.endpoint])
    backend = json.loads(router.paths.slots.read_text())["apps"]["demo"]["backend"]
    router_.remove(app="demo", drain_timeout=5)

    assert get(router, "demo.localhost").status_code == 404
    assert router_.state() == {}
    assert "demo" not in json.loads(router.paths.slots.read_text())["apps"]
    assert f"{backend} 1 s1 127.0.0.1 0 5 " in admin_command(f"show servers state {backend}")  # maint again
    router_.remove(app="demo")  # removing twice is harmless


def test_drain_waits_for_running_requests_before_maintenance(router, backends):
    old, new = backends("old"), backends("new")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    with httpx.Client(timeout=10) as client:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(
                client.get, f"http://127.0.0.1:{router.port}/slow?s=1.5", headers={"Host": "demo.localhost"}
            )
            wait_for(
                lambda: router_.state()["demo"]["endpoints"] and sessions(router) > 0,
                timeout=5,
                message="the slow request to reach the old endpoint",
            )
            router_.apply(
                app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], drain_timeout=10
            )
            assert slow.done()  # apply returned only after the old endpoint's request had finished
            assert slow.result().text == "old"
    assert router_.state()["demo"]["endpoints"] == [("127.0.0.1", new.port, "UP")]


def test_a_drain_that_outlasts_its_timeout_ends_in_maintenance_anyway(router, backends):
    old, new = backends("old"), backends("new")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    with socket.create_connection(("127.0.0.1", router.port)) as stuck:
        stuck.sendall(b"GET /slow?s=30 HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
        wait_for(lambda: sessions(router) > 0, timeout=5, message="the stuck request")
        router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], drain_timeout=1)
    assert router_.state()["demo"]["endpoints"] == [("127.0.0.1", new.port, "UP")]


def test_a_dead_endpoint_leaves_rotation_within_three_seconds(router, backends):
    alive, dying = backends("alive"), backends("dying")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[alive.endpoint, dying.endpoint])
    dying.kill()
    started = time.monotonic()
    wait_for(
        lambda: ("127.0.0.1", dying.port, "DOWN") in router_.state()["demo"]["endpoints"],
        timeout=3,
        interval=0.05,
        message="the dead endpoint to be marked DOWN",
    )
    assert time.monotonic() - started < 3
    assert {get(router, "demo.localhost").text for _ in range(6)} == {"alive"}


def test_websockets_pass_through(router, backends):
    echo = backends("ws-1", kind="ws")
    get_router().apply(app="chat", hostnames=["chat.localhost"], endpoints=[echo.endpoint])
    sock = socket.create_connection(("127.0.0.1", router.port))
    with websocket_connect(f"ws://chat.localhost:{router.port}/", sock=sock, open_timeout=5) as websocket:
        for n in range(3):
            websocket.send(f"hello {n}")
            assert websocket.recv(timeout=5) == f"ws-1:hello {n}"


@pytest.mark.parametrize(
    "hostnames, endpoints",
    [
        (["demo.localhost; del map x"], [Endpoint("127.0.0.1", 8000)]),
        (["-bad.localhost"], [Endpoint("127.0.0.1", 8000)]),
        (["demo.localhost"], [Endpoint("localhost", 8000)]),
        (["demo.localhost"], [Endpoint("127.0.0.1", 0)]),
    ],
)
def test_apply_refuses_what_could_not_be_a_hostname_or_endpoint(hostnames, endpoints):
    with pytest.raises(ValueError):
        InMemoryRouter().apply(app="demo", hostnames=hostnames, endpoints=endpoints)


def test_in_memory_router_keeps_what_it_is_given():
    router_ = InMemoryRouter()
    router_.apply(app="demo", hostnames=["Demo.localhost"], endpoints=[Endpoint("127.0.0.1", 8000)])
    router_.sync({"other": (["other.localhost"], [])})
    assert router_.state() == {"other": {"hostnames": ["other.localhost"], "endpoints": []}}


def test_a_drain_does_not_hold_up_other_apps(router, backends):
    old, new, other = backends("old"), backends("new"), backends("other")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    with (
        socket.create_connection(("127.0.0.1", router.port)) as stuck,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        stuck.sendall(b"GET /slow?s=30 HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
        wait_for(lambda: sessions(router) > 0, timeout=5, message="the stuck request")
        cut_over = pool.submit(
            router_.apply, app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], drain_timeout=4
        )
        wait_for(lambda: get(router, "demo.localhost").text == "new", timeout=5, message="the cut-over")
        started = time.monotonic()
        router_.apply(app="other", hostnames=["other.localhost"], endpoints=[other.endpoint])
        assert time.monotonic() - started < 1
        assert not cut_over.done()  # still draining the old endpoint
        assert get(router, "other.localhost").text == "other"
        cut_over.result(timeout=10)


def test_get_router_follows_the_setting(settings):
    settings.BERTH_ROUTER = "memory"
    assert isinstance(get_router(), InMemoryRouter)


def test_a_dropped_get_or_head_is_retried_but_a_dropped_post_is_not(router, backends):
    web = backends("web")
    get_router().apply(app="demo", hostnames=["demo.localhost"], endpoints=[web.endpoint])
    url, host = f"http://127.0.0.1:{router.port}", {"Host": "demo.localhost"}

    assert httpx.get(f"{url}/drop", headers=host).status_code == 502
    assert httpx.get(f"{url}/dropped", headers=host).text == "4"  # the first try and `retries 3`
    assert httpx.head(f"{url}/drop", headers=host).status_code == 502  # HAProxy's METH_GET is GET or HEAD
    assert httpx.get(f"{url}/dropped", headers=host).text == "8"
    assert httpx.post(f"{url}/drop", headers=host, content=b"order=1").status_code == 502
    assert httpx.get(f"{url}/dropped", headers=host).text == "9"  # the app may have acted on it: once only


def test_a_websocket_on_a_drained_endpoint_lives_until_the_drain_timeout_then_is_closed(router, backends):
    old, new = backends("ws-old", kind="ws"), backends("ws-new", kind="ws")
    router_ = get_router()
    router_.apply(app="chat", hostnames=["chat.localhost"], endpoints=[old.endpoint])

    def open_websocket():
        sock = socket.create_connection(("127.0.0.1", router.port))
        return websocket_connect(f"ws://chat.localhost:{router.port}/", sock=sock, open_timeout=5)

    with open_websocket() as websocket, concurrent.futures.ThreadPoolExecutor(1) as pool:
        cut_over = pool.submit(
            router_.apply, app="chat", hostnames=["chat.localhost"], endpoints=[new.endpoint], drain_timeout=2
        )
        time.sleep(1)
        websocket.send("still there?")  # draining: the open session goes on
        assert websocket.recv(timeout=5) == "ws-old:still there?"
        with open_websocket() as second:  # new sessions go to the new endpoint
            second.send("hi")
            assert second.recv(timeout=5) == "ws-new:hi"
        cut_over.result(timeout=10)
        with pytest.raises(ConnectionClosed):  # past the drain timeout the router ended it
            websocket.send("and now?")
            websocket.recv(timeout=5)


class DeafEndpoint:
    """An endpoint that takes requests and never answers, then dies like a lost node: its port stops accepting
    (HAProxy's checks then fail) while the requests on it stay stuck. Runs in this test's process, on loopback."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stuck: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # died
            connection.settimeout(2)
            try:
                request = connection.recv(4096)
            except OSError:
                request = b""
            if request:
                self.stuck.append(connection)  # a request: keep it and never answer
            else:
                connection.close()  # an L4 check

    def die(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        except OSError:
            pass  # dead already
        self.listener.close()

    def close(self) -> None:
        self.die()
        for connection in self.stuck:
            connection.close()


@pytest.fixture
def deaf():
    endpoint = DeafEndpoint()
    yield endpoint
    endpoint.close()


def _stuck_request(router, deaf: DeafEndpoint) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", router.port))
    client.sendall(b"GET / HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
    wait_for(lambda: deaf.stuck, timeout=5, message="the request stuck on the deaf endpoint")
    return client


@pytest.mark.parametrize("removed", ["after the checks marked it down", "before the checks mark it down"])
def test_a_dead_endpoints_stuck_request_does_not_hold_up_its_removal(router, backends, deaf, removed):
    """A node dies with a request in flight: removing its endpoint must not wait for that request (it would
    wait for HAProxy's 30 s server timeout, and so would the routing of the node's replacement)."""
    alive = backends("alive")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[deaf.endpoint])
    with _stuck_request(router, deaf):
        router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[deaf.endpoint, alive.endpoint])
        if removed.startswith("after"):
            deaf.die()
            wait_for(
                lambda: ("127.0.0.1", deaf.port, "DOWN") in router_.state()["demo"]["endpoints"],
                timeout=5,
                interval=0.05,
                message="the dead endpoint marked DOWN",
            )
        else:
            threading.Timer(0.5, deaf.die).start()
        started = time.monotonic()
        router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[alive.endpoint], drain_timeout=25)
        took = time.monotonic() - started
    # marking down takes up to ~3 s (two failed checks); after that nothing is waited for
    assert took < (1 if removed.startswith("after") else 5), took
    assert router_.state()["demo"]["endpoints"] == [("127.0.0.1", alive.port, "UP")]
    assert get(router, "demo.localhost").text == "alive"


def test_apply_without_waiting_returns_at_once_and_the_drain_finishes_behind_it(router, backends):
    old, new = backends("old"), backends("new")
    router_ = get_router()
    router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[old.endpoint])
    with httpx.Client(timeout=10) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            client.get, f"http://127.0.0.1:{router.port}/slow?s=2", headers={"Host": "demo.localhost"}
        )
        wait_for(lambda: sessions(router) > 0, timeout=5, message="the slow request on the old endpoint")
        started = time.monotonic()
        router_.apply(
            app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], drain_timeout=10, wait=False
        )
        assert time.monotonic() - started < 1
        assert not slow.done()
        assert get(router, "demo.localhost").text == "new"  # new requests: the new endpoint only
        # asked again meanwhile (as the watcher does every second), still without waiting
        router_.apply(app="demo", hostnames=["demo.localhost"], endpoints=[new.endpoint], wait=False)
        assert ("127.0.0.1", old.port, "DRAIN") in router_.state()["demo"]["endpoints"]
        assert slow.result(timeout=10).text == "old"  # the running request finished on the old endpoint
    wait_for(
        lambda: router_.state()["demo"]["endpoints"] == [("127.0.0.1", new.port, "UP")],
        timeout=5,
        interval=0.05,
        message="the old endpoint freed once its request ended",
    )
