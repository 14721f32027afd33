"""ASGI entry point: gunicorn's uvicorn worker serves HTTP (Django) and WebSockets (Channels) here."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from berth.config.routing import websocket_urlpatterns  # noqa: E402
from berth.observe.middleware import websocket_auth  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_auth(URLRouter(websocket_urlpatterns)),
    }
)
