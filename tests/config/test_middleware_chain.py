"""Under ASGI the whole middleware chain runs sync (berth.config.middleware.SyncRequestChain): no middleware is left
in async mode, where each one's request and response cost a thread hop."""

from asgiref.sync import iscoroutinefunction
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
