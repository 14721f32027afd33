"""WebSocket routes: the Channels consumers of berth.live (URLs the dashboard and `berth logs` depend on)."""

from django.urls import path

from berth.live import consumers

websocket_urlpatterns: list = [
    path("ws/apps/<str:app>/logs", consumers.AppLogsConsumer.as_asgi()),
    path("ws/apps/<str:app>/events", consumers.AppEventsConsumer.as_asgi()),
    path("ws/apps/<str:app>/state", consumers.AppStateConsumer.as_asgi()),
    path("ws/builds/<int:build_id>", consumers.BuildConsumer.as_asgi()),
    path("ws/nodes", consumers.NodesConsumer.as_asgi()),
]
