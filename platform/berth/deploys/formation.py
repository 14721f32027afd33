"""The formation: how many copies of each process type run, with what limits. `formation_update` records a change
(the row write, with the team's quota checked); `formation_apply` in berth.deploys.services rolls it out."""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction

from berth.apps.models import App, Formation
from berth.apps.quotas import app_formation_rows, formation_usage, quota_check, team_quota_lock, team_usage
from berth.apps.signals import formation_changed
from berth.apps.validators import validate_process_name
from berth.audit.services import audit_record
from berth.releases.selectors import latest_release


def _int_in(item: dict, field: str, low: int, high: int, process: str) -> int | None:
    value = item[field]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError({field: f"{process}: must be an integer from {low} to {high}"})
    return value


def _cpu(item: dict, process: str) -> Decimal | None:
    value = item["cpu"]
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        cpu = Decimal(str(value))
    except InvalidOperation:
        cpu = None
    if cpu is None or not cpu.is_finite() or not Decimal("0.01") <= cpu <= 64 or cpu != round(cpu, 2):
        raise ValidationError({"cpu": f"{process}: must be a number from 0.01 to 64 (two decimals at most)"})
    return cpu


def _formation_quota_check(*, app: App, updates: dict[str, dict]) -> None:
    """Refuse a formation change that takes the team above its replicas or memory quota (berth.apps.quotas)."""
    rows = app_formation_rows(app)
    after = dict(rows)
    for process, fields in updates.items():
        replicas, memory_mb = after.get(process, (1, None))  # get_or_create below: the model default
        after[process] = (fields.get("replicas", replicas), fields.get("memory_mb", memory_mb))
    others = team_usage(team=app.team, exclude_app_id=app.pk)
    quota_check(team=app.team, before=others + formation_usage(rows), after=others + formation_usage(after))


def formation_update(
    *, app: App, changes: list[dict], actor, remote_addr: str | None = None
) -> list[Formation]:
    """Scale process types and set their limits: [{"process", "replicas"?, "memory_mb"?, "cpu"?}].

    Only process types of the latest release's procfile (or already in the formation; "web" before any
    release) may be scaled. Fields left out are unchanged; null clears a limit. All or nothing.
    """
    if not isinstance(changes, list) or not changes:
        raise ValidationError({"formation": 'send a list of {"process", "replicas", "memory_mb"?, "cpu"?}'})
    release = latest_release(app)
    known = set(release.procfile if release else {}) | set(
        Formation.objects.filter(app=app).values_list("process", flat=True)
    )
    known = known or {"web"}
    updates: dict[str, dict] = {}
    for item in changes:
        if not isinstance(item, dict):
            raise ValidationError({"formation": "each entry must be an object"})
        extra = set(item) - {"process", "replicas", "memory_mb", "cpu"}
        if extra:
            raise ValidationError({sorted(extra)[0]: "unknown field"})
        process = item.get("process")
        validate_process_name(process)
        if process not in known:
            raise ValidationError(
                {"process": f"unknown process type {process!r}; this app has {', '.join(sorted(known))}"}
            )
        fields = {}
        if "replicas" in item:
            if item["replicas"] is None:
                raise ValidationError({"replicas": f"{process}: must be an integer from 0 to 100"})
            fields["replicas"] = _int_in(item, "replicas", 0, 100, process)
        if "memory_mb" in item:
            fields["memory_mb"] = _int_in(item, "memory_mb", 32, 65536, process)
        if "cpu" in item:
            fields["cpu"] = _cpu(item, process)
        updates.setdefault(process, {}).update(fields)
    with transaction.atomic():
        team_quota_lock(team=app.team)
        _formation_quota_check(app=app, updates=updates)
        for process, fields in updates.items():
            formation, created = Formation.objects.select_for_update().get_or_create(
                app=app, process=process, defaults=fields
            )
            if not created and fields:
                Formation.objects.filter(pk=formation.pk).update(**fields)
        audit_record(
            action="formation.update",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            data={
                p: {k: (str(v) if isinstance(v, Decimal) else v) for k, v in f.items()}
                for p, f in updates.items()
            },
        )
        processes = sorted(updates)
        transaction.on_commit(lambda: formation_changed.send(sender=App, app=app, processes=processes))
    return list(Formation.objects.filter(app=app).order_by("process"))
