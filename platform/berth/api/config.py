"""API v1 for an app's config vars: read them, and change them (a new release, rolled out)."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip
from berth.apps import selectors as apps_selectors
from berth.releases import services as releases_services


class AppConfigView(AppScopedView):
    @extend_schema(responses=S.Config)
    def get(self, request, app: str):
        return Response(apps_selectors.config_for_app(app=self.app))

    @extend_schema(request=S.ConfigChange, responses=S.Config)
    def patch(self, request, app: str):
        releases_services.config_update(
            app=self.app, changes=body(request), actor=request.user, remote_addr=client_ip(request)
        )
        return Response(apps_selectors.config_for_app(app=self.app))
