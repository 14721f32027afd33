"""API v1 for invitations: a team's pending ones (list, invite by email, revoke) and accepting one."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts.models import Invitation
from berth.api import schema as S
from berth.api.common import BerthAPIView, TeamScopedView, body, client_ip, str_field


def invitation_repr(
    invitation: Invitation, token: str | None = None, url: str | None = None, emailed: bool | None = None
) -> dict:
    data = {
        "id": invitation.pk,
        "email": invitation.email,
        "role": invitation.role,
        "expires_at": invitation.expires_at,
        "created_at": invitation.created_at,
    }
    if token is not None:
        data["token"] = token
    if url is not None:
        data["url"] = url
        data["emailed"] = emailed
    return data


class TeamInvitationsView(TeamScopedView):
    @extend_schema(responses=S.Invitation(many=True))
    def get(self, request, team: str):
        return Response([invitation_repr(i) for i in accounts_selectors.pending_invitations(team=self.team)])

    @extend_schema(request=S.InvitationCreate, responses={201: S.Invitation})
    def post(self, request, team: str):
        data = body(request)
        invitation, token = accounts_services.invitation_create(
            team=self.team,
            email=str_field(data, "email"),
            role=str_field(data, "role"),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        # the dashboard's join link (by URL name: the API imports no other edge), on the address the caller used
        url = request.build_absolute_uri(reverse("dashboard:invitation-open", kwargs={"token": token}))
        not_sent = accounts_services.invitation_email_send(invitation=invitation, url=url)
        return Response(invitation_repr(invitation, token, url=url, emailed=not_sent is None), status=201)


class TeamInvitationView(TeamScopedView):
    @extend_schema(responses={204: S.NoContent, 409: S.Error})
    def delete(self, request, team: str, pk: int):
        accounts_services.invitation_revoke(
            invitation=accounts_selectors.pending_invitation(team=self.team, pk=pk),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(status=204)


class InvitationAcceptView(BerthAPIView):
    @extend_schema(request=S.InvitationAccept, responses={200: S.Joined, 404: S.Error, 409: S.Error})
    def post(self, request):
        token = str_field(body(request), "token")
        membership = accounts_services.invitation_accept(
            token=token, user=request.user, remote_addr=client_ip(request)
        )
        return Response({"team": membership.team.name, "role": membership.role})
