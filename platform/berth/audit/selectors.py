from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from berth.audit.models import AuditEvent

# The team activity feed's kinds: which audit actions each one gathers (an action name, or a prefix ending in ".").
# Security bookkeeping (tokens, sign-ups, password links) stays in the admins' audit log only.
ACTIVITY_KINDS: dict[str, tuple[str, ...]] = {
    "deploys": ("build.create", "build.cancel", "release.", "app.create", "app.destroy"),
    "config": ("config.update", "app.update", "app.https", "app.maintenance."),
    "scale": ("formation.update", "ps.restart"),
    "members": ("membership.", "invitation.", "team.create"),
    "domains": ("domain.",),
    "certificates": ("cert.",),
}


def audit_events_for_team(*, team, limit: int = 200) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(team=team).select_related("actor").order_by("-created_at", "-id")[:limit]


def _actions_q(prefixes: tuple[str, ...]) -> Q:
    q = Q(pk__in=[])
    for prefix in prefixes:
        q |= Q(action__startswith=prefix) if prefix.endswith(".") else Q(action=prefix)
    return q


def audit_events_search(
    *, team, query: str = "", kinds: list[str] | None = None, app: str = ""
) -> QuerySet[AuditEvent]:
    """A team's audit events, newest first, for a paged list: `query` matches (case-insensitive) the action, the
    target, the actor's username or the recorded names in `data`; `kinds` keeps only those of ACTIVITY_KINDS;
    `app` keeps the events about that app. Unknown kinds are ignored (the caller validates what it shows)."""
    events = AuditEvent.objects.filter(team=team).select_related("actor").order_by("-created_at", "-id")
    if kinds is not None:
        prefixes = tuple(p for kind in kinds for p in ACTIVITY_KINDS.get(kind, ()))
        events = events.filter(_actions_q(prefixes))
    if app:
        # the app's own actions name it as the target ("demo", "demo v3", "demo build 7"); the others in data
        events = events.filter(Q(target=app) | Q(target__startswith=f"{app} ") | Q(data__app=app))
    query = query.strip()
    if query:
        events = events.annotate(data_text=Cast("data", TextField())).filter(
            Q(action__icontains=query)
            | Q(target__icontains=query)
            | Q(actor__username__icontains=query)
            | Q(data_text__icontains=query)
        )
    return events
