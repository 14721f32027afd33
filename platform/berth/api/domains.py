"""API v1 for an app's custom domains: list, add, remove."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip, str_field
from berth.apps import selectors as apps_selectors
from berth.apps import services as apps_services


class AppDomainsView(AppScopedView):
    @extend_schema(responses=S.Domain(many=True))
    def get(self, request, app: str):
        return Response(
            [
                {"hostname": d.hostname, "created_at": d.created_at}
                for d in apps_selectors.domains_for_app(app=self.app)
            ]
        )

    @extend_schema(request=S.DomainAdd, responses={201: S.Domain, 409: S.Error})
    def post(self, request, app: str):
        hostname = str_field(body(request), "hostname")
        domain = apps_services.domain_add(
            app=self.app, hostname=hostname, actor=request.user, remote_addr=client_ip(request)
        )
        return Response({"hostname": domain.hostname, "created_at": domain.created_at}, status=201)


class AppDomainView(AppScopedView):
    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str, hostname: str):
        apps_services.domain_remove(
            domain=apps_selectors.domain_for_app(app=self.app, hostname=hostname),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(status=204)
