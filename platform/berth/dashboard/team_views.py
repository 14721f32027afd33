"""Dashboard pages for teams (switcher, admin panel: members, invitations, audit), API tokens and nodes."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import capfirst
from django.views.decorators.http import require_GET, require_POST

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts import throttles as accounts_throttles
from berth.accounts.roles import ADMIN, ROLE_CHOICES, VIEWER, role_at_least
from berth.audit.selectors import ACTIVITY_KINDS, audit_events_for_team, audit_events_search
from berth.dashboard.activity import activity_link, activity_summary
from berth.dashboard.common import SESSION_SHOWN_ONCE, SESSION_TEAM, attempt, client_ip, page, team_with_role
from berth.dashboard.forms import service_refusal
from berth.dashboard.selectors import tokens_for_user
from berth.nodes.selectors import can_see_nodes

AUDIT_SHOWN = 100
ACTIVITY_SHOWN = 8  # the team page's "Recent activity"; the feed's own page has the rest


def _next_or(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def _team_back(team, section: str) -> HttpResponse:
    return redirect(reverse("dashboard:team", kwargs={"team": team.name}) + f"#{section}")


def _show_once(request: HttpRequest, label: str, secret: str) -> None:
    # Kept in the session only until the next page shows it; never stored anywhere else in clear.
    request.session[SESSION_SHOWN_ONCE] = {"label": label, "secret": secret}


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team = accounts_selectors.team_for_user(user=request.user, name=request.POST.get("team", ""))
    request.session[SESSION_TEAM] = team.name
    return _next_or(request, reverse("dashboard:apps"))


@login_required
def team_new(request: HttpRequest) -> HttpResponse:
    name = ""
    errors: dict[str, str] = {}
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        team, errors = service_refusal(
            accounts_services.team_create,
            fields=("name",),
            conflict_field="name",
            name=name,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        if not errors:
            request.session[SESSION_TEAM] = team.name
            messages.success(request, f"Created team {team.name}; you are its owner.")
            return redirect("dashboard:team", team=team.name)
    elif request.method != "GET":
        return HttpResponse(status=405)
    return page(
        request, "dashboard/team_new.html", {"name": name, "errors": errors}, status=400 if errors else 200
    )


@login_required
@require_GET
def team_detail(request: HttpRequest, team: str) -> HttpResponse:
    team, role = team_with_role(request, team, VIEWER)
    return _team_page(request, team, role)


def _team_page(request: HttpRequest, team, role: str, *, refused: dict | None = None) -> HttpResponse:
    """The team page; `refused` ({form: {"errors": {field: message}, "values": {field: typed}}}) re-renders it
    after a refused POST (HTTP 400) with that form as sent and each error beside its field."""
    can_admin = role_at_least(role, ADMIN)
    context = {
        "refused": refused or {},
        "team": team,
        "role": role,
        "can_admin": can_admin,
        "is_owner": role == "owner",
        "members": list(accounts_selectors.team_members(team=team)),
        "role_choices": ROLE_CHOICES,
        "tokens": list(tokens_for_user(user=request.user)),
        "now": timezone.now(),  # to mark expired tokens
        "invitations": list(accounts_selectors.pending_invitations(team=team)) if can_admin else [],
        "audit": list(audit_events_for_team(team=team, limit=AUDIT_SHOWN)) if can_admin else [],
        "activity": [
            {"event": e, "summary": activity_summary(e), "link": activity_link(e)}
            for e in audit_events_search(team=team, kinds=list(ACTIVITY_KINDS))[:ACTIVITY_SHOWN]
        ],
        "email_enabled": settings.BERTH_EMAIL_ENABLED,
    }
    return page(request, "dashboard/team.html", context, status=400 if refused else 200)


@login_required
@require_POST
def member_add(request: HttpRequest, team: str) -> HttpResponse:
    team, my_role = team_with_role(request, team, ADMIN)
    who = request.POST.get("user", "").strip()
    role = request.POST.get("role", "")
    user = accounts_selectors.user_to_add(
        actor=request.user, username=who if "@" not in who else None, email=who if "@" in who else None
    )
    if user is None:
        # a stranger's username gets the same answer as an unknown one (accounts_selectors.user_to_add)
        errors = {"user": f"no user {who!r} among the members of your teams; invite them by email instead"}
    else:
        _, errors = service_refusal(
            accounts_services.membership_add,
            fields=("user", "role"),
            conflict_field="user",
            team=team,
            user=user,
            role=role,
            actor=request.user,
            remote_addr=client_ip(request),
        )
    if errors:
        refused = {"member_add": {"errors": errors, "values": {"user": who, "role": role}}}
        return _team_page(request, team, my_role, refused=refused)
    messages.success(request, f"Added {user.get_username()} to {team.name}.")
    return _team_back(team, "members")


def _membership(team, username: str):
    membership = accounts_selectors.team_members(team=team).filter(user__username=username).first()
    if membership is None:
        raise Http404(f"{username} is not a member of {team.name}")
    return membership


@login_required
@require_POST
def _member_refused(request: HttpRequest, team, my_role: str, username: str, errors: dict) -> HttpResponse:
    # shown in that member's row: the refusal is about them (the last owner, the owner role)
    refused = {"member": {"username": username, "errors": {"form": capfirst(" ".join(errors.values()))}}}
    return _team_page(request, team, my_role, refused=refused)


@login_required
@require_POST
def member_role(request: HttpRequest, team: str, username: str) -> HttpResponse:
    team, my_role = team_with_role(request, team, ADMIN)
    role = request.POST.get("role", "")
    _, errors = service_refusal(
        accounts_services.membership_role_change,
        fields=(),
        membership=_membership(team, username),
        role=role,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        return _member_refused(request, team, my_role, username, errors)
    messages.success(request, f"{username} is now {role}.")
    return _team_back(team, "members")


@login_required
@require_POST
def member_remove(request: HttpRequest, team: str, username: str) -> HttpResponse:
    team, my_role = team_with_role(request, team, ADMIN)
    _, errors = service_refusal(
        accounts_services.membership_remove,
        fields=(),
        membership=_membership(team, username),
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        return _member_refused(request, team, my_role, username, errors)
    messages.success(request, f"Removed {username} from {team.name}.")
    return _team_back(team, "members")


@login_required
@require_POST
def invitation_create(request: HttpRequest, team: str) -> HttpResponse:
    team, my_role = team_with_role(request, team, ADMIN)
    email = request.POST.get("email", "").strip()
    role = request.POST.get("role", "")
    result, errors = service_refusal(
        accounts_services.invitation_create,
        fields=("email", "role"),
        team=team,
        email=email,
        role=role,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        refused = {"invitation": {"errors": errors, "values": {"email": email, "role": role}}}
        return _team_page(request, team, my_role, refused=refused)
    invitation, clear = result
    # the address this admin's browser reached Berth at: the invitee opens the same server
    url = request.build_absolute_uri(reverse("dashboard:invitation-open", kwargs={"token": clear}))
    not_sent = accounts_services.invitation_email_send(invitation=invitation, url=url)
    if not_sent is None:
        label = f"Invitation link for {email}: e-mailed to them. It is shown only now, to copy if they need it again."
    else:
        label = (
            f"Invitation link for {email}: send it to them (not e-mailed: {not_sent}). It is shown only now."
        )
    request.session[SESSION_SHOWN_ONCE] = {"label": label, "secret": url, "place": "invitations"}
    return _team_back(team, "invitations")


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, team: str, pk: int) -> HttpResponse:
    team, _ = team_with_role(request, team, ADMIN)
    invitation = accounts_selectors.pending_invitations(team=team).filter(pk=pk).first()
    if invitation is None:
        raise Http404("invitation not found")
    attempt(
        request,
        accounts_services.invitation_revoke,
        invitation=invitation,
        actor=request.user,
        remote_addr=client_ip(request),
        success=f"Revoked the invitation of {invitation.email}.",
    )
    return _team_back(team, "invitations")


@login_required
def invitation_accept(request: HttpRequest) -> HttpResponse:
    typed, errors = "", {}
    if request.method == "POST":
        typed = request.POST.get("token", "").strip()
        # the whole link pasted is as good as its token (…/join/<token>/)
        token = typed.rstrip("/").rsplit("/join/", 1)[-1] if "/join/" in typed else typed
        try:
            membership, errors = service_refusal(
                accounts_services.invitation_accept,
                fields=("token",),
                token=token,
                user=request.user,
                remote_addr=client_ip(request),
            )
        except Http404:
            membership, errors = None, {"token": "that invitation does not exist or was revoked"}
        if not errors:
            request.session[SESSION_TEAM] = membership.team.name
            messages.success(request, f"You joined {membership.team.name} as {membership.role}.")
            return redirect("dashboard:team", team=membership.team.name)
    elif request.method != "GET":
        return HttpResponse(status=405)
    context = {"token": typed, "errors": errors}
    return page(request, "dashboard/invitation_accept.html", context, status=400 if errors else 200)


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    days = request.POST.get("expires_in_days", "").strip()
    result, errors = service_refusal(
        accounts_services.token_create_throttled,
        fields=("name", "expires_in_days"),
        errors=(accounts_throttles.Throttled, accounts_throttles.GuardUnavailable),
        user=request.user,
        name=name,
        expires_in_days=int(days) if days.isdigit() else (days or None),
        remote_addr=client_ip(request),
    )
    if errors:
        # shown again on the team page the form was on, beside its fields
        team = (
            accounts_selectors.teams_for_user(user=request.user)
            .filter(name=request.POST.get("team", ""))
            .first()
        )
        if team is not None:
            refused = {"token": {"errors": errors, "values": {"name": name, "expires_in_days": days}}}
            return _team_page(request, team, team.role, refused=refused)
        for text in errors.values():
            messages.error(request, capfirst(text))
        return _next_or(request, reverse("dashboard:apps"))
    token, clear = result
    _show_once(request, f"API token {token.name!r} (copy it now; it is shown only once)", clear)
    return _next_or(request, reverse("dashboard:apps"))


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = tokens_for_user(user=request.user).filter(pk=pk).first()
    if token is None:
        raise Http404("token not found")
    attempt(
        request,
        accounts_services.token_revoke,
        token=token,
        actor=request.user,
        remote_addr=client_ip(request),
        success=f"Revoked token {token.name!r}.",
    )
    return _next_or(request, reverse("dashboard:apps"))


@login_required
@require_GET
def nodes(request: HttpRequest) -> HttpResponse:
    if not can_see_nodes(request.user):
        raise PermissionDenied("the nodes page is for platform admins")
    return page(request, "dashboard/nodes.html")
