"""`Authorization: Bearer berth_…` authentication with API tokens (the CLI's way in)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from berth.accounts.selectors import token_expired_at
from berth.accounts.services import token_authenticate


class BearerTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None  # not ours: let session authentication try
        if len(parts) != 2:
            raise AuthenticationFailed("malformed Authorization header; use: Bearer <token>")
        try:
            clear = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("invalid token") from None
        token = token_authenticate(clear=clear)
        if token is None:
            expired = token_expired_at(clear=clear)
            if expired is not None:
                raise AuthenticationFailed(
                    f"token expired on {expired:%Y-%m-%d %H:%M} UTC; create a new one or log in again"
                )
            raise AuthenticationFailed("invalid, revoked or expired token")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to requests without credentials.
        return 'Bearer realm="berth"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer token in the OpenAPI schema (registered by being defined)."""

    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "an API token: berth_…"}
