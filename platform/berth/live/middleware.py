"""WebSocket authentication: an API token (header or `?token=`) or the Django session cookie.

Wraps Channels' AuthMiddlewareStack. A token, when given, decides alone (a wrong one is anonymous, it does not fall
back to the cookie). A session counts only for a same-origin browser page: cookies ride along on a WebSocket opened
by any other site, so a foreign Origin is treated as anonymous (cross-site WebSocket hijacking).
"""

from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from berth.accounts.services import token_authenticate


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _token(scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


def _same_origin(scope) -> bool:
    origin = _header(scope, b"origin")
    if origin is None:
        return True  # not a browser: a cookie here was put there by its owner
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    return urlsplit(origin).netloc.lower() == (_header(scope, b"host") or "").lower()


@database_sync_to_async
def _user_for_token(clear: str):
    token = token_authenticate(clear=clear)
    return token.user if token is not None else AnonymousUser()


class TokenAuthMiddleware:
    """Sets scope["user"] from an API token, or keeps the session's user for a same-origin page."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        token = _token(scope)
        if token is not None:
            scope["user"] = await _user_for_token(token)
        elif not _same_origin(scope):
            scope["user"] = AnonymousUser()
        return await self.inner(scope, receive, send)


def websocket_auth(inner):
    """Session (cookie) auth from Channels, then the token and origin rules above."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))
