"""WebSocket routes (Channels consumers), added by the domains that stream."""

websocket_urlpatterns: list = []
