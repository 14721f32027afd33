"""API v1 for a team's audit log (its latest events, newest first)."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import TeamScopedView
from berth.audit.selectors import audit_events_for_team


class TeamAuditView(TeamScopedView):
    @extend_schema(responses=S.AuditEvent(many=True))
    def get(self, request, team: str):
        return Response(
            [
                {
                    "actor": e.actor.get_username() if e.actor else None,
                    "action": e.action,
                    "target": e.target,
                    "created_at": e.created_at,
                    "remote_addr": e.remote_addr,
                    "data": e.data,
                }
                for e in audit_events_for_team(team=self.team)
            ]
        )
