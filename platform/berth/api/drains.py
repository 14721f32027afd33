"""API v1 for an app's log drains (berth.drains): list them with their delivery figures, add one, remove one.
Members and above: a drain's URL can hold a secret (an HTTPS receiver's token), as config vars do."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from berth.api.common import AppScopedView, body, client_ip, str_field
from berth.drains import selectors as drains_selectors
from berth.drains import services as drains_services
from berth.drains.models import Drain


def drain_repr(drain: Drain) -> dict:
    return {
        "id": drain.pk,
        "url": drain.url,
        "token": drain.token,
        "delivered": drain.delivered,
        "dropped": drain.dropped,
        "last_error": drain.last_error,
        "last_error_at": drain.last_error_at,
        "last_success_at": drain.last_success_at,
        "created_at": drain.created_at,
    }


class AppDrainsView(AppScopedView):
    @extend_schema(
        operation_id="apps_drains_list",
        responses=OpenApiTypes.OBJECT,
        description="The app's drains with what each was sent (delivered), lost to the log's cap before it could "
        "be sent (dropped), and its last error and success.",
    )
    def get(self, request, app: str):
        return Response([drain_repr(d) for d in drains_selectors.drains_for_app(self.app)])

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        description='{"url": "syslog+tls://host:port" | "syslog://host:port" | "https://…"}: the lines the app '
        "logs from now on (its output, router access lines, platform events) are sent there.",
    )
    def post(self, request, app: str):
        drain = drains_services.drain_add(
            app=self.app,
            url=str_field(body(request), "url"),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(drain_repr(drain), status=201)


class AppDrainView(AppScopedView):
    def handle_exception(self, exc):
        if isinstance(exc, Drain.DoesNotExist):
            exc = NotFound("no such drain on this app")
        return super().handle_exception(exc)

    @extend_schema(responses={204: None}, description="`drain` is the drain's id or token.")
    def delete(self, request, app: str, drain: str):
        drains_services.drain_remove(
            app=self.app, url_or_id=drain, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=204)
