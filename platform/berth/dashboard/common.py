"""What every dashboard view shares: the current team, the page frame, role checks, service errors as messages."""

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.accounts.roles import role_at_least
from berth.accounts.selectors import team_for_user, teams_for_user, user_role
from berth.nodes.selectors import can_see_nodes

SESSION_TEAM = "berth_team"
# Shown once after a redirect (a new API token or invitation token); popped when the next page renders it.
SESSION_SHOWN_ONCE = "berth_shown_once"


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def current_team(request: HttpRequest) -> tuple[Team | None, list[Team]]:
    """The team chosen with the switcher (kept in the session), else the user's first team; and all their teams."""
    teams = list(teams_for_user(user=request.user))
    chosen = request.session.get(SESSION_TEAM)
    for team in teams:
        if team.name == chosen:
            return team, teams
    return (teams[0] if teams else None), teams


def team_with_role(request: HttpRequest, name: str, min_role: str) -> tuple[Team, str]:
    """The named team (404 if the user is not in it) and the user's role; 403 if the role is below `min_role`."""
    team = team_for_user(user=request.user, name=name)
    role = user_role(user=request.user, team=team)
    if not role_at_least(role, min_role):
        raise PermissionDenied(
            f"this needs the {min_role} role (or higher) in team {team.name}; you are {role}"
        )
    return team, role


def page(
    request: HttpRequest,
    template: str,
    context: dict | None = None,
    status: int = 200,
    *,
    teams: tuple[Team | None, list[Team]] | None = None,
) -> HttpResponse:
    """Render a page inside the frame (navigation, team switcher, messages). `teams`: current_team's answer, when
    the view asked it already."""
    team, teams = teams or current_team(request)
    frame = {
        "current_team": team,
        "teams": teams,
        "can_see_nodes": can_see_nodes(request.user),
        "shown_once": request.session.pop(SESSION_SHOWN_ONCE, None),
    }
    return render(request, template, {**frame, **(context or {})}, status=status)


def error_text(exc: Exception) -> str:
    """A service error as one sentence for a person: "name: must be 2-30 characters ..."."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(
                f"{field}: {' '.join(msgs)}" if field != "__all__" else " ".join(msgs)
                for field, msgs in exc.message_dict.items()
            )
        return " ".join(exc.messages)
    return str(exc) or type(exc).__name__


def attempt(
    request: HttpRequest,
    func: Callable[..., Any],
    /,
    *,
    errors: tuple[type[Exception], ...] = (),
    success: str | None = None,
    **kwargs,
) -> tuple[bool, Any]:
    """Call a service; a refusal (invalid input, a conflict, a guard) becomes an error message, never a 500.

    Services are all-or-nothing, so a refused call has changed nothing. Returns (ok, result).
    """
    try:
        result = func(**kwargs)
    except (ValidationError, Conflict, PermissionDenied, *errors) as exc:
        messages.error(request, error_text(exc))
        return False, None
    if success:
        messages.success(request, success)
    return True, result
