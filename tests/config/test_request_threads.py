"""The web process runs a request's sync code on a thread a finished request left (berth/config/middleware.py).

Django's ASGI handler started a thread for each request and stopped it after; the event loop waited for each new
thread to start. Here Berth's handler serves requests in-process over ASGI, and the thread it lends is looked at.
"""

import asyncio
import threading

import pytest
from berth.config.middleware import RequestThread, SyncViewsASGIHandler


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

    scope = {
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
    await handler(scope, receive, send)
    return next(message["status"] for message in sent if message["type"] == "http.response.start")


def test_requests_one_after_another_run_on_the_same_thread():
    handler = SyncViewsASGIHandler()

    async def three_requests():
        statuses, lent = [], []
        for _ in range(3):
            statuses.append(await _get(handler, "/no-such-page/"))
            lent.append(list(handler.idle_threads))
        return statuses, lent

    statuses, lent = asyncio.run(three_requests())
    assert statuses == [404, 404, 404]
    assert len(lent[0]) == 1 and lent[1] == lent[0] and lent[2] == lent[0]  # one thread, lent again and again
    for thread in handler.idle_threads:
        thread.shutdown()


def test_a_thread_still_running_what_it_was_given_is_busy():
    thread = RequestThread()
    release = threading.Event()
    try:
        future = thread.submit(release.wait, 10)
        assert thread.busy
        release.set()
        future.result(timeout=10)
        assert not thread.busy
    finally:
        thread.shutdown()


@pytest.mark.parametrize("concurrent", [3])
def test_requests_at_once_get_threads_of_their_own_and_leave_them_idle(concurrent):
    handler = SyncViewsASGIHandler()

    async def at_once():
        return await asyncio.gather(*(_get(handler, "/no-such-page/") for _ in range(concurrent)))

    assert asyncio.run(at_once()) == [404] * concurrent
    assert 1 <= len(handler.idle_threads) <= concurrent
    assert not any(thread.busy for thread in handler.idle_threads)
    for thread in handler.idle_threads:
        thread.shutdown()
