"""API v1 for a team's members: list, add (by username among the adder's teams, or by email), change a role,
remove."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.api import schema as S
from berth.api.common import TeamScopedView, body, client_ip, str_field


class TeamMembersView(TeamScopedView):
    @extend_schema(responses=S.Member(many=True))
    def get(self, request, team: str):
        members = accounts_selectors.team_members(team=self.team)
        return Response(
            [{"username": m.user.get_username(), "email": m.user.email, "role": m.role} for m in members]
        )

    @extend_schema(request=S.MemberAdd, responses={201: S.Member, 409: S.Error})
    def post(self, request, team: str):
        data = body(request)
        role = str_field(data, "role")
        username, email = data.get("username"), data.get("email")
        if not username and not email:
            raise ValidationError({"username": "send username or email"})
        user = accounts_selectors.user_to_add(actor=request.user, username=username, email=email)
        if user is None:
            # the same answer for a stranger's username as for one nobody has: probing names learns nothing
            if username:
                raise ValidationError(
                    {"username": "no such user in your teams; add them by email or invite them"}
                )
            raise ValidationError({"email": "no such user; invite them by email instead"})
        membership = accounts_services.membership_add(
            team=self.team, user=user, role=role, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(
            {"username": user.get_username(), "email": user.email, "role": membership.role}, status=201
        )


class TeamMemberView(TeamScopedView):
    @extend_schema(request=S.RoleChange, responses={200: S.Member, 409: S.Error})
    def patch(self, request, team: str, username: str):
        role = str_field(body(request), "role")
        membership = accounts_services.membership_role_change(
            membership=accounts_selectors.team_membership(team=self.team, username=username),
            role=role,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        user = membership.user
        return Response({"username": user.get_username(), "email": user.email, "role": membership.role})

    @extend_schema(responses={204: S.NoContent, 409: S.Error})
    def delete(self, request, team: str, username: str):
        accounts_services.membership_remove(
            membership=accounts_selectors.team_membership(team=self.team, username=username),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(status=204)
