"""API v1 for the caller's own account: signing in for a token, who they are (`me`), and their API tokens."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts.models import ApiToken
from berth.api import schema as S
from berth.api.common import BerthAPIView, body, client_ip, str_field


def token_created_repr(token: ApiToken, clear: str) -> dict:
    return {"id": token.pk, "name": token.name, "token": clear, "expires_at": token.expires_at}


class AuthTokenView(BerthAPIView):
    authentication_classes = []  # a stale header must not stop someone signing in again

    @extend_schema(request=S.SignIn, responses={201: S.TokenCreated, 400: S.Error, 429: S.Error})
    def post(self, request):
        data = body(request)
        created = accounts_services.token_sign_in(
            request=request,
            username=str_field(data, "username"),
            password=str_field(data, "password"),
            name=data.get("name") or "cli",
            expires_in_days=data.get("expires_in_days"),
            remote_addr=client_ip(request),
        )
        if created is None:
            raise ValidationError({"detail": "wrong username or password"})
        return Response(token_created_repr(*created), status=201)


class MeView(BerthAPIView):
    @extend_schema(responses=S.Me)
    def get(self, request):
        user = request.user
        memberships = accounts_selectors.memberships_of_user(user=user)
        return Response(
            {
                "username": user.get_username(),
                "email": user.email,
                "is_superuser": user.is_superuser,
                "teams": [{"name": m.team.name, "role": m.role} for m in memberships],
            }
        )


class TokenListView(BerthAPIView):
    @extend_schema(responses=S.Token(many=True))
    def get(self, request):
        return Response(
            [
                {
                    "id": t.pk,
                    "name": t.name,
                    "created_at": t.created_at,
                    "last_used_at": t.last_used_at,
                    "expires_at": t.expires_at,
                }
                for t in accounts_selectors.live_tokens(user=request.user)
            ]
        )

    @extend_schema(request=S.TokenCreate, responses={201: S.TokenCreated, 429: S.Error})
    def post(self, request):
        data = body(request)
        token, clear = accounts_services.token_create_throttled(
            user=request.user,
            name=str_field(data, "name"),
            expires_in_days=data.get("expires_in_days"),
            remote_addr=client_ip(request),
        )
        return Response(token_created_repr(token, clear), status=201)


class TokenView(BerthAPIView):
    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, pk: int):
        token = accounts_selectors.live_token(user=request.user, pk=pk)
        accounts_services.token_revoke(token=token, actor=request.user, remote_addr=client_ip(request))
        return Response(status=204)
