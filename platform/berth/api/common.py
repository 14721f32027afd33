"""What every API v1 view shares: the base views (errors of the services mapped to HTTP, the body cap, the team a
route is about), reading a JSON body, and the caller's address for the audit log."""

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from berth.accounts import selectors as accounts_selectors
from berth.accounts import throttles as accounts_throttles
from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.accounts.roles import VIEWER
from berth.api.openapi import BerthSchema
from berth.api.permissions import RolePermission, is_platform_admin
from berth.apps import quotas
from berth.apps import selectors as apps_selectors
from berth.core.bodylimit import too_large_detail

# Bodies of API v1 are a few fields (a config change is the largest). The ASGI door (berth.core.bodylimit) refuses
# bigger ones before Django stores them; this same rule, checked again here, covers servers without that door.
MAX_BODY_BYTES = settings.BERTH_MAX_REQUEST_BYTES


class ConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"
    default_code = "conflict"


class GuardUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "signing in is unavailable right now; try again shortly"
    default_code = "unavailable"


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = too_large_detail(MAX_BODY_BYTES)
    default_code = "too_large"


def client_ip(request: Request) -> str | None:
    """The caller's address as the audit log records it."""
    return request.META.get("REMOTE_ADDR") or None


def body(request: Request, kind: type = dict) -> dict | list:
    """The request's JSON body, which must be an object (or, with kind=list, an array): 400 otherwise."""
    data = request.data
    if not isinstance(data, kind):
        raise ValidationError({"body": f"must be a JSON {'object' if kind is dict else 'array'}"})
    return data


def str_field(data: dict, field: str, *, required: bool = True) -> str | None:
    """A non-empty string field of a body: 400 naming the field otherwise (None if absent and not required)."""
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError({field: "is required (a non-empty string)"})
    return value


class BerthAPIView(APIView):
    """Maps service errors to HTTP: Django's ValidationError -> 400 naming the field, Conflict -> 409."""

    permission_classes = [RolePermission]
    schema = BerthSchema()
    # Who passes the PLATFORM_ADMIN rule of berth.api.permissions on this view's routes. A view about one
    # platform-wide thing names that thing's own rule (the nodes: berth.nodes.selectors.can_see_nodes).
    platform_rule = staticmethod(is_platform_admin)

    def initial(self, request, *args, **kwargs):
        # Before authentication: some permission checks read the body (the team of a new app). DRF parses only
        # what Content-Length announces (a body without one reads as empty), so the header is enough to check.
        length = request.META.get("CONTENT_LENGTH") or "0"
        if request.method in ("POST", "PUT", "PATCH") and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyTooLarge()
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, DjangoValidationError):
            detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
            exc = ValidationError(detail)
        elif isinstance(exc, quotas.QuotaExceeded):
            # 409 with the quota, its limit and the usage beside the one-line detail (set as is: DRF would
            # turn the numbers into strings)
            fields, exc = exc.as_dict(), ConflictError(str(exc))
            exc.detail = fields
        elif isinstance(exc, Conflict):
            exc = ConflictError(str(exc))
        elif isinstance(exc, DjangoPermissionDenied):
            exc = PermissionDenied(str(exc) or None)
        elif isinstance(exc, accounts_throttles.GuardUnavailable):
            exc = GuardUnavailable(f"{exc}; try again shortly")
        elif isinstance(exc, accounts_throttles.Throttled):
            # 429 with Retry-After (DRF's handler adds the header from `wait`); the detail already says when
            throttled = Throttled(detail=str(exc))
            throttled.wait = exc.retry_after
            exc = throttled
        return super().handle_exception(exc)

    def permission_team(self, request) -> Team:
        raise NotImplementedError


# A route about the team named in its path (`<team>`). (Said in a comment: drf-spectacular shows a view's
# docstring in the API's documentation as its operations' description.)
class TeamScopedView(BerthAPIView):
    def permission_team(self, request) -> Team:
        if not hasattr(self, "team"):
            self.team = accounts_selectors.team_for_user(user=request.user, name=self.kwargs["team"])
        return self.team


# A route about the app named in its path (`<app>`): its team is the one the role is checked in.
class AppScopedView(BerthAPIView):
    def permission_team(self, request) -> Team:
        if not hasattr(self, "app"):
            # The role check itself is the permission class's; here the app is only found (404 if unseen).
            self.app = apps_selectors.app_for_user(
                user=request.user, name=self.kwargs["app"], min_role=VIEWER
            )
        return self.app.team
