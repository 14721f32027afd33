"""Maintenance mode in the real router: a hostname answers its page with 503 and Retry-After from HAProxy while the
app's processes keep running, switched on and off through the runtime API under keep-alive load."""

import subprocess
import time

import httpx
import pytest
from berth.routing.haproxy import MAINTENANCE_RETRY_AFTER, haproxy_command, write_config
from berth.routing.router import MAINTENANCE_PAGE_MAX, RouterRefused, get_router

from tests.conftest import free_port, wait_for
from tests.support.backends import KeepAliveLoad, start_backend

PAGE = "<!doctype html><title>Back soon</title>\n<h1>Back soon — ünïcode</h1>"


@pytest.fixture
def web():
    backend = start_backend("web", port=free_port())
    yield backend
    backend.stop()


def get(router, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{router.port}{path}", headers={"Host": host}, timeout=10)


def test_maintenance_on_and_off_under_load_answers_only_200s_and_503s_never_an_error(router, web):
    router_ = get_router()
    router_.apply(app="shop", hostnames=["shop.localhost", "www.shop.test"], endpoints=[web.endpoint])
    router_.apply(app="blog", hostnames=["blog.localhost"], endpoints=[web.endpoint])
    with KeepAliveLoad(
        port=router.port, host="shop.localhost", threads=4, duration=10, max_requests=40_000
    ) as load:
        load.wait_for_requests(200)
        router_.host_maintenance_put(hostname="shop.localhost", page=PAGE)
        on_at = time.monotonic()
        wait_for(
            lambda: get(router, "shop.localhost").status_code == 503, timeout=5, message="maintenance on"
        )
        time.sleep(1)
        router_.host_maintenance_remove(hostname="shop.localhost")
        off_at = time.monotonic()
        time.sleep(1)
        load.stop()
    errors = [failure for failure in load.failures if not failure.startswith("HTTP 503: ")]
    print(
        f"\nmaintenance on/off under load: {load.total} requests, {len(load.failures)} answered 503, errors {errors}"
    )
    assert errors == []
    assert len(load.failures) > 50  # the page was served, with keep-alive kept
    assert load.served_by(since=off_at)["web"] > 50
    assert load.served_by(since=on_at)["web"] > 0  # before the switch took, and after it ended

    router_.host_maintenance_put(hostname="shop.localhost", page=PAGE)
    answer = get(router, "shop.localhost", "/any/path?x=1")
    # the same HTML with its line break as a space (HAProxy would print a control character as %0A)
    assert answer.status_code == 503 and answer.text == PAGE.replace("\n", " ")
    assert answer.headers["retry-after"] == str(MAINTENANCE_RETRY_AFTER)
    assert answer.headers["content-type"].startswith("text/html")
    # only that hostname: the app's other name and other apps are served
    assert get(router, "www.shop.test").text == "web" and get(router, "blog.localhost").text == "web"
    # ACME challenges still answered (a certificate renews during maintenance)
    router_.challenge_put(token="tok-9", key_authorization="tok-9.thumb")
    assert get(router, "shop.localhost", "/.well-known/acme-challenge/tok-9").text == "tok-9.thumb"


def test_maintenance_survives_a_router_restart_and_bad_input_is_refused(router, web):
    router_ = get_router()
    router_.apply(app="shop", hostnames=["shop.localhost"], endpoints=[web.endpoint])
    router_.host_maintenance_put(hostname="shop.localhost", page=PAGE)
    router.process.terminate()
    router.process.wait(timeout=10)
    paths = write_config(http_port=router.port, https_port=router.https_port)
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(router), timeout=10, message="the restarted HAProxy")
        router_.sync({"shop": (["shop.localhost"], [web.endpoint])})
        assert get(router, "shop.localhost").status_code == 503
        router_.host_maintenance_remove(hostname="shop.localhost")
        router_.host_maintenance_remove(hostname="shop.localhost")  # again: no error
        assert get(router, "shop.localhost").text == "web"
        with pytest.raises(RouterRefused, match="the limit is"):
            router_.host_maintenance_put(hostname="shop.localhost", page="x" * (MAINTENANCE_PAGE_MAX + 1))
        with pytest.raises(RouterRefused):
            router_.host_maintenance_put(hostname="bad host", page=PAGE)
        assert get(router, "shop.localhost").text == "web"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(router) -> bool:
    try:
        get(router, "nobody.localhost")
        return True
    except httpx.HTTPError:
        return False
