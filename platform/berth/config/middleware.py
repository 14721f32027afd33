"""How a request's middleware chain and view run under ASGI: a sync view in one hop into a thread.

Django's ASGI handler runs every request through its async chain. With sync middleware and a sync view, that chain
hops between the event loop and a thread at every sync/async boundary: WhiteNoise (sync only), back to the loop for
the view layer, into a thread for CSRF's process_view, into a thread again for the view. Measured (py-spy of a web
worker serving the API's apps list, and the same request in-process): 4.6 ms of CPU a request in-process, 6.7-10 ms
served, a third of the worker's samples in asgiref's hops. SyncViewsASGIHandler gives a sync view the sync chain, in
one hop (the worker's CPU a request 6.05-6.78 -> 5.40-5.75 ms; the web tree's PSS unchanged, 172 -> 169 MB, though
each middleware is built twice); the async views (git's smart HTTP) keep the async chain, whose innermost
SyncRequestChain keeps the middleware above it in one thread as well.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver


class SyncRequestChain:
    """The innermost middleware: sync only, so that an async view's chain runs in the request's one thread.

    Below WhiteNoise (sync only), Django ran the others (sessions, CSRF, auth, messages, ...) in async mode, each
    one's process_request and process_response its own hop into a thread and back: measured on the dashboard's apps
    page (py-spy), two thirds of a request's samples were in asgiref's hops. With this class last, every middleware
    above it is run sync (Django adapts a chain once per sync/async boundary)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


# idle request threads a worker keeps for the next requests (more at once are started, and stopped after)
IDLE_REQUEST_THREADS = 16


class RequestThread(ThreadPoolExecutor):
    """One thread that runs a request's sync code, lent to one request at a time; `busy` while anything given to
    it has not ended (a request cancelled from outside may end before the code it started)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self.running = 0
        self.count_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self.count_lock:
            self.running += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._ended)
        return future

    def _ended(self, _future: Future) -> None:
        with self.count_lock:
            self.running -= 1

    @property
    def busy(self) -> bool:
        return self.running > 0


class SyncViewsASGIHandler(ASGIHandler):
    """Django's ASGI handler, but a request for a sync view (or for no view: a 404) runs the sync chain, middleware
    and view, as one call in the request's thread. The same middleware classes, each built once per chain.

    The request's thread is one a finished request left, not a new one: Django's handler started a thread for each
    request and stopped it after (py-spy of a worker under 8 clients of the apps list: the event loop waited in
    Thread.start for 9 % of its samples, a new thread having to win the interpreter lock to say it runs). A
    thread serves one request at a time, as a WSGI server's do; the request's database connection is closed in it
    when its response is (request_finished), as before."""

    def __init__(self) -> None:
        super().__init__()
        self.sync_handler = BaseHandler()
        self.sync_handler.load_middleware(is_async=False)
        self.idle_threads: list[RequestThread] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self.idle_threads.pop() if self.idle_threads else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            # a client that left is waited for (asgiref lets the view end), but a request cancelled from outside
            # (the server stopping: a second cancel ends that wait) may leave its code running: not lent again
            if not thread.busy and len(self.idle_threads) < IDLE_REQUEST_THREADS:
                self.idle_threads.append(thread)
            else:
                thread.shutdown(wait=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        if _is_async_view(request.path_info):
            return await super().get_response_async(request)
        # thread_sensitive: the request's own thread (ASGIHandler's ThreadSensitiveContext), where its database
        # connection is closed when the response is
        return await sync_to_async(self.sync_handler.get_response, thread_sensitive=True)(request)


def _is_async_view(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)
