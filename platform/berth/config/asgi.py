"""ASGI entry point: gunicorn's uvicorn worker serves HTTP (Django) and WebSockets (Channels) here."""

import contextlib
import gc
import os
import re
from importlib import import_module

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
# PostgreSQL connections from a pool, in this process only (settings.py: a connection kept by a request's thread is
# never used again): set for the settings to read, then taken away, so the programs it starts (and a test process
# that imports this module after its settings were read) never inherit it
os.environ["BERTH_DATABASE_POOL"] = "1"

import django  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application, whose handler is replaced below

from berth.config.middleware import SyncViewsASGIHandler  # noqa: E402

django_asgi_app = SyncViewsASGIHandler()
del os.environ["BERTH_DATABASE_POOL"]

from django.conf import settings  # noqa: E402

from berth.config.routing import websocket_urlpatterns  # noqa: E402
from berth.core.bodylimit import BodyCap, BodyLimit  # noqa: E402
from berth.gitserver import conf as git_conf  # noqa: E402
from berth.gitserver.backend import HEAD_BYTES  # noqa: E402
from berth.live.middleware import websocket_auth  # noqa: E402

PRELOADED = (
    "celery.app.amqp",
    "celery.app.events",
    "celery.backends.base",
    "celery.canvas",
    "celery.contrib.django.task",
    "celery.events.dispatcher",
    "celery.result",
    "kombu.mixins",
    "kombu.transport.redis",
    "kombu.utils.limits",
    "django.contrib.messages.storage.fallback",
    "django.contrib.sessions.serializers",
)

# Django reads a whole body before any view runs: the caps apply before it, by path.
http_app = BodyLimit(
    django_asgi_app,
    default=BodyCap(
        path=re.compile(".*"), limit=settings.BERTH_MAX_REQUEST_BYTES, setting="BERTH_MAX_REQUEST_BYTES"
    ),
    caps=[
        # The git view refuses an oversized push in git's own protocol, so the pusher reads why.
        BodyCap(
            path=re.compile(r"/git/[^/]+\.git/git-receive-pack"),
            limit=git_conf.MAX_PUSH_BYTES,
            setting="BERTH_GIT_MAX_PUSH_BYTES",
            json=False,
            app_answers=True,
            head_bytes=HEAD_BYTES,
        ),
        BodyCap(
            path=re.compile(r"/git/[^/]+\.git/(info/refs|git-upload-pack)"),
            limit=settings.BERTH_GIT_MAX_FETCH_BYTES,
            setting="BERTH_GIT_MAX_FETCH_BYTES",
            json=False,
        ),
    ],
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": websocket_auth(URLRouter(websocket_urlpatterns)),
    }
)

# Every view's module, now rather than at each worker's first request: with --preload, once, shared by the workers
# (measured: the web tree after 80 requests 199 → 157 MB PSS)
import_module(settings.ROOT_URLCONF)
# What a worker's first task sent (a push's build) and first dashboard login import, found in each worker after four
# pushes (33-37 modules): imported here, once, for the same reason. A name a newer
# library no longer has is skipped, never a reason not to start.
for module in PRELOADED:
    with contextlib.suppress(ImportError):
        import_module(module)

# gunicorn --preload (deploy/Procfile) imports all of the above once, in its master, and forks the workers from it.
# Frozen, those objects are never walked by a worker's garbage collector: no collection copies the pages they sit
# on into each worker, nor spends its time on them (measured, web tree after 80 requests: 225 MB PSS, 239
# preloaded, 199 preloaded and frozen; the API's apps list at 8 clients 210 → 231 requests/s)
gc.freeze()
