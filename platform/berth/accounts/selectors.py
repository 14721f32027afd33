from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import F, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from berth.accounts.models import ApiToken, Invitation, Membership, Team, hash_secret
from berth.accounts.roles import OWNER
from berth.accounts.validators import has_control_characters


def user_role(*, user, team: Team) -> str | None:
    """The user's role in the team, or None. An active superuser counts as an owner of every team."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    # order_by(): Membership's default order joins the team and user tables, for a row that is unique
    role = Membership.objects.filter(user=user, team=team).order_by().values_list("role", flat=True).first()
    if role is None and user.is_superuser:
        return OWNER
    return role


def teams_for_user(*, user) -> QuerySet[Team]:
    """Teams the user can see, each annotated with `role`: the user's role in it as `user_role` answers (a
    superuser is owner of the teams they are not a member of)."""
    if user.is_superuser:
        role = Subquery(
            Membership.objects.filter(team=OuterRef("pk"), user=user).order_by().values("role")[:1]
        )
        return Team.objects.annotate(role=Coalesce(role, Value(OWNER))).order_by("name")
    # the membership the filter joins gives the role (a subquery per team, ordered by Membership's joins, was half
    # of this query's time on every dashboard page)
    return Team.objects.filter(memberships__user=user).annotate(role=F("memberships__role")).order_by("name")


def team_for_user(*, user, name: str) -> Team:
    """The named team if the user can see it; Http404 otherwise (a team you are not in does not exist for you)."""
    team = Team.objects.filter(name=name).first()
    if team is None or user_role(user=user, team=team) is None:
        raise Http404(f"team {name!r} not found")
    return team


def team_members(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("user__username")


def pending_invitations(*, team: Team) -> QuerySet[Invitation]:
    return Invitation.objects.filter(team=team, accepted_at=None, revoked_at=None).order_by("-created_at")


def user_to_add(*, actor, username: str | None = None, email: str | None = None):
    """The active user `actor` may add to a team directly, or None.

    By email: whoever has that address (the adder already knows it). By username: only someone who already shares a
    team with the actor (any user, for a superuser); a stranger's username answers like an unknown one, so probing
    names reveals neither who exists nor anybody's email. Everyone else joins through an invitation.
    """
    if any(has_control_characters(value or "") for value in (username, email)):
        return None  # no account has such a name (SQLite would compare only up to a NUL)
    users = get_user_model().objects.filter(is_active=True)
    if username:
        if not actor.is_superuser:
            users = users.filter(memberships__team__memberships__user=actor).distinct()
        return users.filter(username=username).first()
    if email:
        return users.filter(email__iexact=email).order_by("id").first()
    return None


def token_expired_at(*, clear: str) -> datetime | None:
    """When the token with this clear value expired, if it is a live (not revoked) token past its expiry; else None.

    Lets the API say "token expired on ..." instead of a bare "invalid token"; the clear value proves possession."""
    if not clear:
        return None
    return (
        ApiToken.objects.filter(
            token_hash=hash_secret(clear), revoked_at=None, expires_at__lte=timezone.now()
        )
        .values_list("expires_at", flat=True)
        .first()
    )


def team_named(*, name: str) -> Team:
    """The team of that name, whoever asks (platform admins' routes); Http404 when there is none."""
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise Http404("no such team")
    return team


def teams_joined(*, user, limit: int) -> list[Team]:
    """Up to `limit` teams the user is a member of (a superuser's unjoined teams are not among them)."""
    return list(Team.objects.filter(memberships__user=user)[:limit])


def memberships_of_user(*, user) -> QuerySet[Membership]:
    """The user's memberships with their teams, by team name."""
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def team_membership(*, team: Team, username: str) -> Membership:
    """The member of the team by username; Http404 when they are not one."""
    membership = (
        Membership.objects.select_related("user", "team").filter(team=team, user__username=username).first()
    )
    if membership is None:
        raise Http404(f"{username} is not a member of {team.name}")
    return membership


def invitation_for_token(*, token: str) -> Invitation | None:
    """The invitation a link's token names (whatever its state), with its team and inviter; None for an unknown
    token. Holding the token is what lets someone see it: the join page shows its team, role and address."""
    if not isinstance(token, str) or not token or has_control_characters(token):
        return None
    return (
        Invitation.objects.select_related("team", "invited_by").filter(token_hash=hash_secret(token)).first()
    )


def invitation_state(invitation: Invitation, *, now: datetime | None = None) -> str:
    """One word for what an invitation link can still do: "open", "revoked", "accepted" or "expired"."""
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.expires_at <= (now or timezone.now()):
        return "expired"
    return "open"


def pending_invitation(*, team: Team, pk: int) -> Invitation:
    """One of the team's pending invitations; Http404 when it is not one."""
    invitation = pending_invitations(team=team).filter(pk=pk).first()
    if invitation is None:
        raise Http404("invitation not found")
    return invitation


def live_tokens(*, user) -> QuerySet[ApiToken]:
    """The user's API tokens that are not revoked (expired ones too: the list says when they expired), newest
    first."""
    return ApiToken.objects.filter(user=user, revoked_at=None).order_by("-created_at")


def live_token(*, user, pk: int) -> ApiToken:
    """One of the user's tokens that is not revoked; Http404 otherwise (another user's token does not exist)."""
    token = ApiToken.objects.filter(user=user, pk=pk, revoked_at=None).first()
    if token is None:
        raise Http404("token not found")
    return token


def _users_with_teams() -> QuerySet:
    return get_user_model().objects.prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("team").order_by("team__name"))
    )


def users_all(*, search: str = "", limit: int = 1000) -> list:
    """Every account (a platform admin's view), by username, with their teams in one more query."""
    users = _users_with_teams().order_by("username")
    if search:
        users = users.filter(Q(username__icontains=search) | Q(email__icontains=search))
    return list(users[:limit])


def user_by_username(*, username: str):
    """The account named `username`, with its teams; Http404 when there is none."""
    user = _users_with_teams().filter(username=username).first()
    if user is None:
        raise Http404(f"no user named {username!r}")
    return user
