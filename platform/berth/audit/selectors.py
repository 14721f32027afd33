from django.db.models import QuerySet

from berth.audit.models import AuditEvent


def audit_events_for_team(*, team, limit: int = 200) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(team=team).select_related("actor").order_by("-created_at", "-id")[:limit]
