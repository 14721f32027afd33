"""API v1 for accounts, platform administrators only: list, create (the person sets a password through the reset
link the answer holds), disable or enable again, and a password reset link to hand over."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts import selectors, services
from berth.api import schema as S
from berth.api.common import BerthAPIView, body, client_ip

SEARCH_MAX = 100


def user_repr(user) -> dict:
    return {
        "username": user.get_username(),
        "email": user.email,
        "is_active": user.is_active,
        "platform_admin": user.is_superuser,
        "teams": [membership.team.name for membership in user.memberships.all()],
        "date_joined": user.date_joined,
        "last_login": user.last_login,
    }


class UsersView(BerthAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("search", str, description="part of a username or e-mail address")],
        responses=S.User(many=True),
    )
    def get(self, request):
        search = request.query_params.get("search", "")
        if len(search) > SEARCH_MAX:
            raise ValidationError({"search": f"is {len(search)} characters; the limit is {SEARCH_MAX}"})
        return Response([user_repr(user) for user in selectors.users_all(search=search)])

    @extend_schema(request=S.UserCreate, responses={201: S.UserCreated, 400: S.Error, 409: S.Error})
    def post(self, request):
        data = body(request)
        unknown = set(data) - {"username", "email", "platform_admin"}
        if unknown:
            raise ValidationError({sorted(unknown)[0]: "is not a field of a new user"})
        user = services.user_create(
            username=data.get("username"),
            email=data.get("email"),
            platform_admin=data.get("platform_admin", False),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        url = services.password_reset_url(user=user, actor=request.user, remote_addr=client_ip(request))
        user = selectors.user_by_username(username=user.get_username())
        return Response(user_repr(user) | {"password_reset_url": url}, status=201)


class UserView(BerthAPIView):
    @extend_schema(responses=S.User)
    def get(self, request, username: str):
        return Response(user_repr(selectors.user_by_username(username=username)))

    @extend_schema(request=S.UserChange, responses={200: S.User, 400: S.Error, 409: S.Error})
    def patch(self, request, username: str):
        data = body(request)
        if set(data) != {"is_active"}:
            raise ValidationError({"is_active": "give is_active (true or false), and nothing else"})
        user = selectors.user_by_username(username=username)
        services.user_set_active(
            user=user, active=data["is_active"], actor=request.user, remote_addr=client_ip(request)
        )
        return Response(user_repr(selectors.user_by_username(username=username)))


class UserPasswordResetView(BerthAPIView):
    @extend_schema(request=None, responses={200: S.PasswordResetLink, 409: S.Error})
    def post(self, request, username: str):
        user = selectors.user_by_username(username=username)
        if not user.is_active:
            raise ValidationError({"username": f"{username} is disabled; enable the account first"})
        url = services.password_reset_url(user=user, actor=request.user, remote_addr=client_ip(request))
        return Response({"username": user.get_username(), "url": url})
