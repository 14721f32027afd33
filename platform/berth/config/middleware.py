"""The innermost middleware: sync only, so that the whole chain runs in the request's one thread.

WhiteNoise is sync only. Below it, Django ran the others (sessions, CSRF, auth, messages, ...) in async mode, each
one's process_request and process_response its own hop into a thread and back: measured on the dashboard's apps
page (py-spy), two thirds of a request's samples were in asgiref's hops. With this class last, every middleware
above it is run sync (Django adapts a chain once per sync/async boundary), and the view is one hop away.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SyncRequestChain:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
