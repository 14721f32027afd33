"""Request rate, 5xx and p95 per app from a real HAProxy (the router tests' fixture) in front of real backends:
the counters of `show stat` and the per-request log lines on the router's datagram socket, as the shipper reads them."""

import time

import httpx
import pytest
from berth.observe.history import history_delete, history_read
from berth.observe.metrics import HistoryRecorder
from berth.observe.traffic import Traffic, p95
from berth.routing.haproxy_router import HaproxyRouter
from berth.routing.router import Endpoint

from tests.conftest import free_port, wait_for
from tests.support.backends import start_backend


@pytest.fixture
def backend():
    started = start_backend("m1", port=free_port())
    yield started
    started.stop()


def test_p95_is_the_nearest_rank():
    assert p95([]) is None
    assert p95([5]) == 5
    assert p95(list(range(1, 101))) == 95
    assert p95([10] * 19 + [1000]) == 10


def test_rate_5xx_and_p95_come_from_real_haproxy_traffic(router, backend, settings, rds):
    app = "metrics-traffic"
    history_delete(app=app, client=rds)
    HaproxyRouter().apply(
        app=app, hostnames=["m.example.test"], endpoints=[Endpoint("127.0.0.1", backend.port)]
    )
    traffic = Traffic(paths=router.paths, admin_socket=settings.BERTH_ROUTER_ADMIN_SOCKET).start()
    try:
        traffic.window()  # the baseline: counters from here on
        started = traffic.read_at
        with httpx.Client(
            base_url=f"http://127.0.0.1:{router.port}", headers={"Host": "m.example.test"}
        ) as web:
            for _ in range(40):
                assert web.get("/", timeout=10).status_code == 200
            for _ in range(3):
                assert web.get("/slow?s=0.5", timeout=10).status_code == 200
            # the app gone: HAProxy answers 5xx itself (503 once its check marks the server down)
            backend.stop()
            statuses = [web.get("/", timeout=10).status_code for _ in range(3)]
        # the last datagrams: read by the log's thread, which a loaded machine runs late (16 of 45 after 0.3 s)
        wait_for(lambda: traffic.request_log.lines >= 46, timeout=10, message="46 request log lines")
        figures = traffic.window()[app]
        elapsed = traffic.read_at - started  # the window's own length: figures are per second of it
        assert all(status >= 500 for status in statuses)
        assert figures["rps"] * elapsed == pytest.approx(46, abs=0.5)  # 46 requests over the window
        assert figures["e5xx"] * elapsed == pytest.approx(3, abs=0.5)
        # the nearest rank of 46 is the third slowest: one of the three 0.5 s answers, or slower (a 5xx answered
        # after HAProxy's retries). With two, it was the slowest 5xx: fast (369 ms) once the check had marked the
        # server down
        assert 400 <= figures["p95"] < 3000
        assert traffic.request_log.lines == 46  # every request logged on the socket
        # and written into the history per 10 s window, as the sampler does
        backend2 = start_backend("m2", port=free_port())
        HaproxyRouter().apply(
            app=app, hostnames=["m.example.test"], endpoints=[Endpoint("127.0.0.1", backend2.port)]
        )
        recorder = HistoryRecorder(redis_conn=rds, traffic=traffic)
        recorder.window = 1_800_000_000
        for _ in range(5):
            httpx.get(f"http://127.0.0.1:{router.port}/", headers={"Host": "m.example.test"}, timeout=10)
        recorder.add(
            app=app, processes=[{"process": "web", "cpu_percent": 3.0, "memory_mb": 20.0}], ts=1_800_000_001
        )
        time.sleep(0.3)
        recorder.flush_due(1_800_000_010)
        web = history_read(app=app, seconds=3600, now=1_800_000_060, client=rds)["processes"]["web"]
        assert web["t"] == [1_800_000_000] and web["cpu"] == [3.0] and web["mem"] == [20.0]
        assert web["rps"][0] > 0 and web["p95"][0] is not None and web["e5xx"] == [0.0]
        backend2.stop()
    finally:
        traffic.stop()
        history_delete(app=app, client=rds)
    assert not router.paths.request_log.exists()
