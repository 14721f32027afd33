"""API v1 for teams: the caller's teams, creating one, and a team's quotas."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts.models import Team
from berth.api import schema as S
from berth.api.common import BerthAPIView, TeamScopedView, body, client_ip, str_field
from berth.apps import quotas


class TeamListView(BerthAPIView):
    @extend_schema(responses=S.Team(many=True))
    def get(self, request):
        teams = accounts_selectors.teams_for_user(user=request.user)
        return Response(
            [
                {
                    "name": t.name,
                    "role": t.role,
                    "created_at": t.created_at,
                }
                for t in teams
            ]
        )

    @extend_schema(request=S.Name, responses={201: S.Team, 409: S.Error})
    def post(self, request):
        name = str_field(body(request), "name")
        team = accounts_services.team_create(name=name, actor=request.user, remote_addr=client_ip(request))
        return Response({"name": team.name, "role": "owner", "created_at": team.created_at}, status=201)


class TeamQuotasView(TeamScopedView):
    """A team's quotas and usage: members read them; only platform admins (superusers) change them."""

    def permission_team(self, request) -> Team:
        if request.method != "GET" and not hasattr(self, "team"):
            # PLATFORM_ADMIN: a superuser sets any team's quotas, member of it or not
            self.team = accounts_selectors.team_named(name=self.kwargs["team"])
        return super().permission_team(request)

    @extend_schema(responses=S.TeamQuotas)
    def get(self, request, team: str):
        return Response(quotas.team_quotas(team=self.permission_team(request)))

    @extend_schema(
        request=S.TeamQuotasChange,
        responses=S.TeamQuotas,
        description="Set the team's quotas (platform admins): a number (0 is no limit), or null for the "
        "installation's default (BERTH_TEAM_MAX_APPS, BERTH_TEAM_MAX_REPLICAS, BERTH_TEAM_MAX_MEMORY_MB).",
    )
    def patch(self, request, team: str):
        return Response(
            quotas.team_quotas_set(
                team=self.permission_team(request),
                changes=body(request),
                actor=request.user,
                remote_addr=client_ip(request),
            )
        )
