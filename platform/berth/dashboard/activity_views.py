"""A team's activity feed (every member: deploys, config, scale, members, domains, certificates) and its full audit
log (admins), both newest first, searched and paged on the server."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from berth.accounts.roles import ADMIN, VIEWER
from berth.audit.selectors import ACTIVITY_KINDS, audit_events_search
from berth.dashboard.activity import activity_link, activity_summary
from berth.dashboard.common import page, team_with_role

ACTIVITY_PAGE = 50
AUDIT_PAGE = 100
QUERY_MAX = 100  # a search longer than any action, name or target only costs the database


def _rows(events) -> list[dict]:
    return [{"event": e, "summary": activity_summary(e), "link": activity_link(e)} for e in events]


def _paged(request: HttpRequest, events, per_page: int):
    # one COUNT and one page of rows (actors joined): the same two queries for 10 events or 100,000
    return Paginator(events, per_page).get_page(request.GET.get("page"))


@login_required
@require_GET
def team_activity(request: HttpRequest, team: str) -> HttpResponse:
    team, role = team_with_role(request, team, VIEWER)
    query = request.GET.get("q", "")[:QUERY_MAX]
    kind = request.GET.get("kind", "")
    kinds = [kind] if kind in ACTIVITY_KINDS else list(ACTIVITY_KINDS)
    app = request.GET.get("app", "").strip()[:30]
    events = _paged(request, audit_events_search(team=team, query=query, kinds=kinds, app=app), ACTIVITY_PAGE)
    context = {
        "team": team,
        "role": role,
        "page_obj": events,
        "rows": _rows(events),
        "query": query,
        "kind": kind if kind in ACTIVITY_KINDS else "",
        "kinds": list(ACTIVITY_KINDS),
        "app_filter": app,
        "filters_qs": urlencode({k: v for k, v in {"q": query, "kind": kind, "app": app}.items() if v}),
        "mode": "activity",
    }
    return page(request, "dashboard/activity.html", context)


@login_required
@require_GET
def team_audit(request: HttpRequest, team: str) -> HttpResponse:
    team, role = team_with_role(request, team, ADMIN)
    query = request.GET.get("q", "")[:QUERY_MAX]
    events = _paged(request, audit_events_search(team=team, query=query), AUDIT_PAGE)
    context = {
        "team": team,
        "role": role,
        "page_obj": events,
        "rows": _rows(events),
        "query": query,
        "filters_qs": urlencode({"q": query} if query else {}),
        "mode": "audit",
    }
    return page(request, "dashboard/activity.html", context)
