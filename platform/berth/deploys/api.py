"""API v1 for what runs: processes (ps) and rollbacks."""

from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from berth.api.views import AppScopedView, _body, _client_ip, _release
from berth.deploys import services


class AppProcessesView(AppScopedView):
    def get(self, request, app: str):
        return Response(services.app_processes(app=self.app))


class AppRollbackView(AppScopedView):
    def post(self, request, app: str):
        data = _body(request)
        version = data.get("version")
        if isinstance(version, str) and version.lower().startswith("v"):
            version = version[1:]
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ValidationError({"version": "is required: a release number such as 3 or v3"}) from None
        try:
            release = services.release_rollback(
                app=self.app, version=version, actor=request.user, remote_addr=_client_ip(request)
            )
        except services.DeployError as exc:
            raise NotFound(str(exc)) from exc
        return Response(_release(release), status=status.HTTP_201_CREATED)
