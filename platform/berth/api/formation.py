"""API v1 for an app's formation: how many replicas of each process type run, with what memory and CPU."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip
from berth.apps import selectors as apps_selectors
from berth.apps.models import Formation
from berth.deploys.formation import formation_update
from berth.nodes.services import constraints_display


def formation_repr(row: Formation) -> dict:
    return {
        "process": row.process,
        "replicas": row.replicas,
        "memory_mb": row.memory_mb,
        "cpu": float(row.cpu) if row.cpu is not None else None,
        "constraints": constraints_display(row.constraints),
    }


class AppFormationView(AppScopedView):
    @extend_schema(responses=S.Formation(many=True))
    def get(self, request, app: str):
        return Response([formation_repr(f) for f in apps_selectors.formation_for_app(app=self.app)])

    @extend_schema(
        request=S.FormationChange(many=True),
        responses={200: S.Formation(many=True), 409: S.Error},
        description="409: the change would take the team above its replicas or memory quota (the answer "
        "also names the `quota`, its `limit`, the `usage` and what was `requested`).",
    )
    def patch(self, request, app: str):
        rows = formation_update(
            app=self.app, changes=body(request, list), actor=request.user, remote_addr=client_ip(request)
        )
        return Response([formation_repr(f) for f in rows])
