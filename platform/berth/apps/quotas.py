"""Team quotas: how many apps, replicas and MB of memory a team's apps may take of the shared nodes.

The one rule (apps, the formation and the API all ask here):
- a team's limit is its own field (Team.max_apps, max_replicas, max_memory_mb) when a platform admin set one, else
  the installation's default (BERTH_TEAM_MAX_APPS, BERTH_TEAM_MAX_REPLICAS, BERTH_TEAM_MAX_MEMORY_MB); 0 means no
  limit, in a team's field and in the settings alike;
- usage is counted from the formation: replicas are the sum over the team's apps' process types; memory is replicas
  x (Formation.memory_mb or BERTH_PROCESS_MEMORY_MB, the limit each container gets anyway). An app with no `web`
  row yet counts the one web replica its first release starts (as the deploy does: berth.deploys.process_specs);
- a change is refused only when it raises a usage above its limit: lowering a quota below today's usage never
  stops a team from scaling down or deleting.
Writers take `team_quota_lock` first in their transaction, so two requests cannot both take the last slot.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.apps.models import App, Formation
from berth.audit.services import audit_record

QUOTAS = ("apps", "replicas", "memory_mb")
UNITS = {"apps": "apps", "replicas": "replicas", "memory_mb": "MB of memory"}
DEFAULT_SETTINGS = {
    "apps": "BERTH_TEAM_MAX_APPS",
    "replicas": "BERTH_TEAM_MAX_REPLICAS",
    "memory_mb": "BERTH_TEAM_MAX_MEMORY_MB",
}


@dataclass(frozen=True)
class Usage:
    """What a team's apps take (or would take after a change)."""

    apps: int = 0
    replicas: int = 0
    memory_mb: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(getattr(self, q) + getattr(other, q) for q in QUOTAS))


class QuotaExceeded(Conflict):
    """A change would take a team above one of its quotas (the API answers 409 with these fields)."""

    def __init__(self, *, team: str, quota: str, limit: int, usage: int, requested: int):
        self.team, self.quota, self.limit, self.usage, self.requested = team, quota, limit, usage, requested
        unit = UNITS[quota]
        super().__init__(
            f"team {team} is over its {quota} quota: this needs {requested} {unit}, the limit is {limit} "
            f"({usage} in use); ask a platform admin to raise it (berth teams:quotas)"
        )

    def as_dict(self) -> dict:
        return {
            "detail": str(self),
            "quota": self.quota,
            "limit": self.limit,
            "usage": self.usage,
            "requested": self.requested,
        }


def team_limits(*, team: Team) -> dict[str, int]:
    """The team's effective limits; 0 is no limit."""
    own = {"apps": team.max_apps, "replicas": team.max_replicas, "memory_mb": team.max_memory_mb}
    return {q: own[q] if own[q] is not None else getattr(settings, DEFAULT_SETTINGS[q]) for q in QUOTAS}


def formation_usage(rows: dict[str, tuple[int, int | None]]) -> Usage:
    """One app's replicas and memory from its formation {process: (replicas, memory_mb or None)}."""
    rows = dict(rows)
    if "web" not in rows:
        rows["web"] = (1, None)  # what the first release starts (process_specs' default)
    default_mb = settings.BERTH_PROCESS_MEMORY_MB
    replicas = sum(r for r, _ in rows.values())
    memory = sum(r * (m or default_mb) for r, m in rows.values())
    return Usage(apps=1, replicas=replicas, memory_mb=memory)


def app_formation_rows(app: App) -> dict[str, tuple[int, int | None]]:
    return {
        row["process"]: (row["replicas"], row["memory_mb"])
        for row in Formation.objects.filter(app=app).values("process", "replicas", "memory_mb")
    }


def team_usage(*, team: Team, exclude_app_id: int | None = None) -> Usage:
    """What the team's apps take now (all of them, or all but one about to change)."""
    app_ids = list(App.objects.filter(team=team).exclude(pk=exclude_app_id).values_list("pk", flat=True))
    rows: dict[int, dict[str, tuple[int, int | None]]] = {pk: {} for pk in app_ids}
    for row in Formation.objects.filter(app_id__in=app_ids).values(
        "app_id", "process", "replicas", "memory_mb"
    ):
        rows[row["app_id"]][row["process"]] = (row["replicas"], row["memory_mb"])
    total = Usage()
    for app_rows in rows.values():
        total = total + formation_usage(app_rows)
    return total


def team_quota_lock(*, team: Team) -> None:
    """Serialise quota-checked writers of one team until the transaction ends (call it first in it)."""
    if connection.vendor == "sqlite":
        Team.objects.filter(pk=team.pk).update(
            name=F("name")
        )  # SQLite: take the write lock (see apps.services.app_row_lock)
    else:
        Team.objects.select_for_update().filter(pk=team.pk).values_list("pk", flat=True).first()


def quota_check(*, team: Team, before: Usage, after: Usage) -> None:
    """Raise QuotaExceeded when `after` takes a usage above its limit that `before` did not already exceed it by."""
    limits = team_limits(team=team)
    for quota in QUOTAS:
        limit, old, new = limits[quota], getattr(before, quota), getattr(after, quota)
        if limit and new > limit and new > old:
            raise QuotaExceeded(team=team.name, quota=quota, limit=limit, usage=old, requested=new)


def team_quotas(*, team: Team) -> dict:
    """What GET /teams/<team>/quotas shows: per quota the team's own value, the effective limit and the usage."""
    limits, usage = team_limits(team=team), team_usage(team=team)
    own = {"apps": team.max_apps, "replicas": team.max_replicas, "memory_mb": team.max_memory_mb}
    return {
        "team": team.name,
        "quotas": {q: {"limit": limits[q], "own": own[q], "usage": getattr(usage, q)} for q in QUOTAS},
    }


def team_quotas_set(*, team: Team, changes: dict, actor, remote_addr: str | None = None) -> dict:
    """Set a team's quotas (platform admins only): {"apps"|"replicas"|"memory_mb": N (0 no limit) or null (the
    installation's default)}. All or nothing."""
    if not getattr(actor, "is_superuser", False):
        raise PermissionDenied("only a platform admin (a superuser) sets a team's quotas")
    if not isinstance(changes, dict) or not changes:
        raise ValidationError(
            {"quotas": 'give one or more of "apps", "replicas", "memory_mb" (a number or null)'}
        )
    fields = {}
    for quota, value in changes.items():
        if quota not in QUOTAS:
            raise ValidationError({quota: 'unknown quota; they are "apps", "replicas", "memory_mb"'})
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31
        ):
            raise ValidationError(
                {quota: "must be a whole number from 0 (no limit) up, or null (the default)"}
            )
        fields[f"max_{quota}"] = value
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).update(**fields)
        for field, value in fields.items():
            setattr(team, field, value)
        audit_record(
            action="team.quotas",
            actor=actor,
            team=team,
            target=team.name,
            remote_addr=remote_addr,
            data=changes,
        )
    return team_quotas(team=team)
