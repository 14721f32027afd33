from django.contrib.auth.models import AbstractBaseUser

from berth.audit.models import AuditEvent


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    team=None,
    target: str = "",
    remote_addr: str | None = None,
    data: dict | None = None,
) -> AuditEvent:
    """Record one state change. Callers pass names only in `data`, never secret values."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        actor=actor,
        team=team,
        action=action,
        target=target[:255],
        remote_addr=remote_addr or None,
        data=data or {},
    )
