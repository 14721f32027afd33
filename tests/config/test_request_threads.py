"""The web process runs a request's sync code on a thread a finished request left (berth/config/middleware.py).

Django's ASGI handler started a thread for each request and stopped it after; the event loop waited for each new
thread to start. Here Berth's handler serves requests in-process over ASGI, and the thread it lends is looked at.
"""

import asyncio
import threading
import time

import pytest
from berth.config.middleware import RequestThread, SyncViewsASGIHandler
from django.core.signals import request_started

from tests.config import asgi_urls


def _get_scope(path: str) -> dict:
    """An ASGI scope of a GET of `path` from a loopback client."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _get(handler: SyncViewsASGIHandler, path: str) -> int:
    sent: list[dict] = []
    body_read = False
    client_stays = asyncio.Event()  # never set: the client does not leave

    async def receive() -> dict:
        nonlocal body_read
        if not body_read:
            body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await client_stays.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = _get_scope(path)
    await handler(scope, receive, send)
    return next(message["status"] for message in sent if message["type"] == "http.response.start")


def test_requests_one_after_another_run_on_the_same_thread():
    handler = SyncViewsASGIHandler()
    threads: list[int] = []

    def started(**kwargs) -> None:  # Django sends it on the thread the request's sync code runs on
        threads.append(threading.get_ident())

    request_started.connect(started)
    try:
        statuses = asyncio.run(_get_each(handler, 3))
        assert statuses == [404, 404, 404]
        assert len(threads) == 3 and len(set(threads)) == 1, threads  # one thread, lent again and again
        assert threads[0] != threading.get_ident()
        assert len(handler.idle_threads) == 1
    finally:
        request_started.disconnect(started)
        for thread in handler.idle_threads:
            thread.shutdown()


async def _get_each(handler: SyncViewsASGIHandler, count: int) -> list[int]:
    return [await _get(handler, "/no-such-page/") for _ in range(count)]


def test_a_thread_still_running_what_it_was_given_is_busy_and_not_lent_again():
    thread = RequestThread()
    release = threading.Event()
    try:
        future = thread.submit(release.wait, 10)
        assert thread.busy
        release.set()
        future.result(timeout=10)
        deadline = time.monotonic() + 5  # the count drops in a callback run just after the result is set
        while thread.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not thread.busy
    finally:
        thread.shutdown()


def test_requests_at_once_get_threads_of_their_own_and_leave_them_idle():
    handler = SyncViewsASGIHandler()

    async def at_once():
        return await asyncio.gather(*(_get(handler, "/no-such-page/") for _ in range(3)))

    try:
        assert asyncio.run(at_once()) == [404] * 3
        assert 1 <= len(handler.idle_threads) <= 3
        assert not any(thread.busy for thread in handler.idle_threads)
    finally:
        for thread in handler.idle_threads:
            thread.shutdown()


def _held_request(handler: SyncViewsASGIHandler, *, client_leaves: bool):
    """A request for the view that holds its thread; its client leaves once the view runs, or stays."""

    async def receive() -> dict:
        if not receive.body_read:
            receive.body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.get_running_loop().run_in_executor(None, asgi_urls.HELD_STARTED.wait, 10)
        if not client_leaves:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    receive.body_read = False

    async def send(message: dict) -> None:
        pass

    scope = _get_scope("/held/")
    return handler(scope, receive, send)


@pytest.fixture
def held_view(settings):
    settings.ROOT_URLCONF = "tests.config.asgi_urls"
    asgi_urls.HELD.clear()
    asgi_urls.HELD_STARTED.clear()
    handler = SyncViewsASGIHandler()
    yield handler
    asgi_urls.HELD.set()
    for thread in handler.idle_threads:
        thread.shutdown()


def test_a_request_whose_client_left_lends_its_thread_again_once_its_view_ended(held_view):
    async def left():
        let_go = asyncio.get_running_loop().call_later(0.5, asgi_urls.HELD.set)
        await _held_request(held_view, client_leaves=True)  # Django waits for the view, then returns
        let_go.cancel()

    asyncio.run(asyncio.wait_for(left(), 10))
    assert len(held_view.idle_threads) == 1 and not held_view.idle_threads[0].busy


def test_a_request_cancelled_while_its_view_runs_does_not_lend_that_thread_again(held_view):
    """The server stopping cancels a request's task; asgiref then waits for the view, and a second cancel stops
    that wait: the view still runs on its thread, which is not lent to the next request (it would wait behind)."""

    async def cancelled():
        task = asyncio.ensure_future(_held_request(held_view, client_leaves=False))
        await asyncio.get_running_loop().run_in_executor(None, asgi_urls.HELD_STARTED.wait, 10)
        for _ in range(2):
            task.cancel()
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert held_view.idle_threads == []
        assert await _get(held_view, "/no-such-page/") == 404  # at once, on a thread of its own

    asyncio.run(asyncio.wait_for(cancelled(), 10))
