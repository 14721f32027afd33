"""Under ASGI the whole middleware chain runs sync (berth.config.middleware.SyncRequestChain): no middleware is left
in async mode, where each one's request and response cost a thread hop; and a sync view runs with the sync chain
in one hop (berth.config.middleware.SyncViewsASGIHandler)."""

import json

from asgiref.sync import async_to_sync, iscoroutinefunction
from asgiref.testing import ApplicationCommunicator
from berth.config.middleware import SyncViewsASGIHandler
from django.core.handlers.asgi import ASGIHandler
from django.utils.deprecation import MiddlewareMixin


def _middleware_instances(handler) -> list:
    """The middleware instances of a loaded chain, outermost first (each is wrapped by
    convert_exception_to_response, whose closure holds it; each holds the next as get_response, adapted or not)."""
    found = []
    current = handler._middleware_chain
    while current is not None:
        # an adapted handler (sync_to_async / async_to_sync) holds the one it adapts
        current = getattr(current, "func", None) or getattr(current, "awaitable", None) or current
        cells = [cell.cell_contents for cell in (getattr(current, "__closure__", None) or ())]
        instance = next((c for c in cells if hasattr(c, "get_response")), None)
        if instance is None:
            break
        found.append(instance)
        current = instance.get_response
    return found


def test_every_middleware_runs_sync_under_asgi(settings):
    handler = ASGIHandler()  # loads the chain as the web process does (is_async=True)
    instances = _middleware_instances(handler)
    names = [type(i).__name__ for i in instances]
    assert "SessionMiddleware" in names and names[-1] == "SyncRequestChain", names
    in_async_mode = [
        type(i).__name__ for i in instances if isinstance(i, MiddlewareMixin) and iscoroutinefunction(i)
    ]
    assert in_async_mode == []


def test_without_it_the_middleware_below_whitenoise_run_async(settings):
    # the test above must be able to fail: the same chain less the last middleware puts sessions in async mode
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("SyncRequestChain")]
    instances = _middleware_instances(ASGIHandler())
    in_async_mode = [
        type(i).__name__ for i in instances if isinstance(i, MiddlewareMixin) and iscoroutinefunction(i)
    ]
    assert "SessionMiddleware" in in_async_mode


async def _aget(handler, path: str) -> tuple[int, dict, dict]:
    communicator = ApplicationCommunicator(
        handler,
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000),
        },
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = await communicator.receive_output(10)
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    answer = json.loads(body["body"]) if headers.get("content-type") == "application/json" else {}
    return start["status"], headers, answer


def get(handler, path: str) -> tuple[int, dict, dict]:
    return async_to_sync(_aget)(handler, path)


def test_a_sync_view_runs_with_its_chain_in_one_hop_and_an_async_view_on_the_loop(settings):
    settings.ROOT_URLCONF = "tests.config.asgi_urls"
    handler = SyncViewsASGIHandler()
    status, headers, answer = get(handler, "/sync/")
    assert status == 200 and answer == {"through_a_hop": False}
    # the same middleware ran: SecurityMiddleware's and XFrameOptionsMiddleware's headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    status, headers, answer = get(handler, "/async/")
    assert status == 200 and answer == {"on_the_loop": True}
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    status, _, _ = get(handler, "/nowhere/")
    assert status == 404


def test_djangos_own_handler_reaches_a_sync_view_through_hops(settings):
    # the test above must be able to fail: Django's ASGIHandler reaches the same view through async_to_sync
    settings.ROOT_URLCONF = "tests.config.asgi_urls"
    status, _, answer = get(ASGIHandler(), "/sync/")
    assert status == 200 and answer == {"through_a_hop": True}
