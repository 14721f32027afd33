"""A URL conf for tests/config/test_middleware_chain.py: one sync view and one async view, each telling how it ran,
before Berth's own (its 404 page names them); and for tests/config/test_request_threads.py a sync view that holds
its thread until the test lets it go."""

import asyncio
import inspect
import threading

from berth.config.urls import urlpatterns as berth_urlpatterns
from django.http import HttpRequest, JsonResponse
from django.urls import path


def _through_a_hop() -> bool:
    # asgiref runs a sync function called back from async code (async_to_sync, then sync_to_async inside it) in
    # its CurrentThreadExecutor: on the stack only when the view was reached through such a hop
    return any("current_thread_executor" in frame.filename for frame in inspect.stack())


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"through_a_hop": _through_a_hop()})


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"on_the_loop": asyncio.get_running_loop() is not None})


HELD = threading.Event()  # set: held_view returns
HELD_STARTED = threading.Event()


def held_view(request: HttpRequest) -> JsonResponse:
    HELD_STARTED.set()
    HELD.wait(10)
    return JsonResponse({"held": True})


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("held/", held_view),
    *berth_urlpatterns,
]
