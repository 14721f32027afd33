"""Writes for apps, their config vars, formation and custom domains. Each records an AuditEvent.

Config values never reach the audit log or any log line: only their keys do.
"""

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.apps.crypto import encrypt_text
from berth.apps.models import App, ConfigVar, Domain, Formation
from berth.apps.quotas import app_formation_rows, formation_usage, quota_check, team_quota_lock, team_usage
from berth.apps.signals import app_destroyed, domains_changed, formation_changed
from berth.apps.validators import (
    normalize_hostname,
    validate_app_name,
    validate_config_key,
    validate_config_value,
    validate_process_name,
)
from berth.audit.services import audit_record

# used with fullmatch: `$` would also match before a trailing newline ("main\n")
BRANCH_RE = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<![./])")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,254}")
BUILDPACK_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
UPDATABLE_FIELDS = ("deploy_branch", "health_check_path", "buildpack")


def app_lock(*, app: App) -> None:
    """Serialise writers of one app until the current transaction ends (call it first in the transaction).

    PostgreSQL: a row lock. SQLite has no row locks and ignores SELECT … FOR UPDATE; a transaction that read
    first and then writes fails at once with "database is locked" when another writer got in between. A no-op
    UPDATE as the first statement takes SQLite's write lock instead, waiting for it up to the busy timeout.
    """
    if connection.vendor == "sqlite":
        App.objects.filter(pk=app.pk).update(name=F("name"))
    else:
        App.objects.select_for_update().filter(pk=app.pk).values_list("pk", flat=True).first()


def _validate_settings(changes: dict) -> dict:
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "cannot be changed here"})
    branch = changes.get("deploy_branch")
    if "deploy_branch" in changes and (not isinstance(branch, str) or not BRANCH_RE.fullmatch(branch)):
        raise ValidationError({"deploy_branch": "must be a valid git branch name"})
    path = changes.get("health_check_path")
    if "health_check_path" in changes and (not isinstance(path, str) or not HEALTH_PATH_RE.fullmatch(path)):
        raise ValidationError({"health_check_path": "must be a URL path starting with /"})
    buildpack = changes.get("buildpack")
    if "buildpack" in changes and (
        not isinstance(buildpack, str) or (buildpack != "" and not BUILDPACK_RE.fullmatch(buildpack))
    ):
        raise ValidationError({"buildpack": 'must be a buildpack name, or "" to detect it'})
    return changes


def app_create(*, team: Team, name: str, actor, remote_addr: str | None = None, **settings_) -> App:
    """Create an app in a team. Names are global (they are hostnames); a taken name is a Conflict."""
    validate_app_name(name)
    _validate_settings(settings_)
    try:
        with transaction.atomic():
            team_quota_lock(team=team)
            before = team_usage(team=team)
            # a new app counts the one web replica its first release starts
            quota_check(team=team, before=before, after=before + formation_usage({}))
            app = App.objects.create(team=team, name=name, **settings_)
            audit_record(action="app.create", actor=actor, team=team, target=name, remote_addr=remote_addr)
    except IntegrityError:
        raise Conflict(f"an app named {name!r} already exists") from None
    return app


def app_update(*, app: App, changes: dict, actor, remote_addr: str | None = None) -> App:
    """Change an app's deploy branch, health-check path or buildpack override."""
    _validate_settings(changes)
    if not changes:
        return app
    with transaction.atomic():
        App.objects.filter(pk=app.pk).update(**changes)
        for field, value in changes.items():
            setattr(app, field, value)
        audit_record(
            action="app.update",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            data={"fields": sorted(changes), **changes},
        )
    return app


def app_destroy(*, app: App, actor, remote_addr: str | None = None) -> None:
    """Delete an app with its config, formation, domains and releases; `app_destroyed` tells runtime to stop it."""
    name, team = app.name, app.team
    with transaction.atomic():
        app.delete()
        audit_record(action="app.destroy", actor=actor, team=team, target=name, remote_addr=remote_addr)
        transaction.on_commit(lambda: app_destroyed.send(sender=App, name=name, team=team.name))


def config_replace(*, app: App, config: dict[str, str]) -> None:
    """Make the app's config vars exactly `config` (a rollback's: the old release's), without a release of its own:
    the next push or config change then builds on what the rollback brought back, as on Heroku."""
    with transaction.atomic():
        app_lock(app=app)
        ConfigVar.objects.filter(app=app).exclude(key__in=list(config)).delete()
        for key, value in config.items():
            ConfigVar.objects.update_or_create(
                app=app, key=key, defaults={"value_encrypted": encrypt_text(value)}
            )


def _config_description(set_keys: list[str], unset_keys: list[str]) -> str:
    parts = []
    if set_keys:
        parts.append(f"Set {', '.join(set_keys)} config vars")
    if unset_keys:
        parts.append(f"Unset {', '.join(unset_keys)}")
    return "; ".join(parts)


def config_update(*, app: App, changes: dict[str, str | None], actor, remote_addr: str | None = None):
    """Set (str) and unset (None) config vars, then make a new release with the latest image and procfile.

    Returns the new Release, or None when nothing changed (unsetting keys that are not set). All or nothing.
    """
    from berth.releases.selectors import latest_release
    from berth.releases.services import release_create

    if not isinstance(changes, dict) or not changes:
        raise ValidationError({"config": 'send an object of {"KEY": "value"} (null unsets a key)'})
    for key, value in changes.items():
        validate_config_key(key)
        if value is not None:
            validate_config_value(key, value)
    with transaction.atomic():
        # Lock the app first so concurrent config changes apply one after another (each its own release).
        app_lock(app=app)
        existing = set(ConfigVar.objects.filter(app=app).values_list("key", flat=True))
        set_keys = sorted(k for k, v in changes.items() if v is not None)
        unset_keys = sorted(k for k, v in changes.items() if v is None and k in existing)
        if not set_keys and not unset_keys:
            return None
        for key in set_keys:
            ConfigVar.objects.update_or_create(
                app=app, key=key, defaults={"value_encrypted": encrypt_text(changes[key])}
            )
        ConfigVar.objects.filter(app=app, key__in=unset_keys).delete()
        audit_record(
            action="config.update",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            data={"set": set_keys, "unset": unset_keys},
        )
        previous = latest_release(app)
        image = previous.image if previous else ""
        return release_create(
            app=app,
            image=image,
            procfile=previous.procfile if previous else {},
            description=_config_description(set_keys, unset_keys),
            actor=actor,
            # `pending`: deploys roll out a pending release that has an image when it is created (their
            # receiver of release_created); builds make `built` ones and deploy those themselves.
            status="pending",
        )


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
    from berth.releases.selectors import latest_release

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


def domain_add(*, app: App, hostname: str, actor, remote_addr: str | None = None) -> Domain:
    """Route a custom hostname to the app. A hostname belongs to one app only (Conflict otherwise)."""
    host = normalize_hostname(hostname)
    try:
        with transaction.atomic():
            domain = Domain.objects.create(app=app, hostname=host)
            audit_record(
                action="domain.add",
                actor=actor,
                team=app.team,
                target=host,
                remote_addr=remote_addr,
                data={"app": app.name},
            )
            transaction.on_commit(
                lambda: domains_changed.send(sender=App, app=app, hostname=host, added=True)
            )
    except IntegrityError:
        raise Conflict(f"the domain {host} is already in use") from None
    return domain


def domain_remove(*, domain: Domain, actor, remote_addr: str | None = None) -> None:
    app, host = domain.app, domain.hostname
    with transaction.atomic():
        domain.delete()
        audit_record(
            action="domain.remove",
            actor=actor,
            team=app.team,
            target=host,
            remote_addr=remote_addr,
            data={"app": app.name},
        )
        transaction.on_commit(lambda: domains_changed.send(sender=App, app=app, hostname=host, added=False))


def config_reencrypt_all(*, batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every stored config value and release snapshot with the current (first) key."""
    from berth.apps.crypto import reencrypt
    from berth.releases.models import Release

    counts = {"config_vars": 0, "releases": 0}
    with transaction.atomic():
        for var in ConfigVar.objects.select_for_update().only("pk", "value_encrypted").iterator(batch_size):
            ConfigVar.objects.filter(pk=var.pk).update(value_encrypted=reencrypt(var.value_encrypted))
            counts["config_vars"] += 1
        # Releases are immutable except for this: the snapshot's clear content does not change, only its key.
        releases = (
            Release.objects.select_for_update().exclude(config_encrypted="").only("pk", "config_encrypted")
        )
        for release in releases.iterator(batch_size):
            Release.objects.filter(pk=release.pk).update(config_encrypted=reencrypt(release.config_encrypted))
            counts["releases"] += 1
        audit_record(action="config.rotate_key", actor=None, data=counts)
    return counts
