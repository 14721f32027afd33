"""Writes for apps, their config vars, formation and custom domains. Each records an AuditEvent.

Config values never reach the audit log or any log line: only their keys do.
"""

import logging
import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.apps.crypto import encrypt_text
from berth.apps.models import App, ConfigVar, Domain
from berth.apps.quotas import formation_usage, quota_check, team_quota_lock, team_usage
from berth.apps.selectors import app_hostnames
from berth.apps.signals import app_destroyed, domains_changed
from berth.apps.validators import (
    normalize_hostname,
    validate_app_name,
    validate_config_key,
)
from berth.audit.services import audit_record
from berth.routing.router import MAINTENANCE_PAGE_MAX, RouterError, get_router

logger = logging.getLogger(__name__)

# used with fullmatch: `$` would also match before a trailing newline ("main\n")
BRANCH_RE = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<![./])")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,254}")
BUILDPACK_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,49}")
UPDATABLE_FIELDS = ("deploy_branch", "health_check_path", "buildpack", "previews", "preview_exclude")
PREVIEW_EXCLUDE_MAX = 100


def app_row_lock(*, app: App) -> None:
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
    if "previews" in changes and not isinstance(changes["previews"], bool):
        raise ValidationError({"previews": "must be true or false"})
    if "preview_exclude" in changes:
        keys = changes["preview_exclude"]
        if not isinstance(keys, list) or len(keys) > PREVIEW_EXCLUDE_MAX:
            raise ValidationError(
                {"preview_exclude": f"must be a list of at most {PREVIEW_EXCLUDE_MAX} config keys"}
            )
        for key in keys:
            try:
                validate_config_key(key)
            except ValidationError as exc:
                raise ValidationError({"preview_exclude": exc.message_dict["config"]}) from None
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


def app_create_check(*, name, settings_: dict) -> None:
    """What app_create refuses before it writes anything: a bad name or setting, a taken name."""
    validate_app_name(name)
    _validate_settings(settings_)
    if App.objects.filter(name=name).exists():
        raise Conflict(f"an app named {name!r} already exists")


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
    in_maintenance = app_hostnames(app) if app.maintenance else []
    with transaction.atomic():
        for preview in App.objects.filter(parent=app):  # its preview apps go with it, each torn down
            app_destroy(app=preview, actor=actor, remote_addr=remote_addr)
        app.delete()
        audit_record(action="app.destroy", actor=actor, team=team, target=name, remote_addr=remote_addr)
        transaction.on_commit(lambda: app_destroyed.send(sender=App, name=name, team=team.name))
        transaction.on_commit(lambda: _maintenance_clear(in_maintenance))


MAINTENANCE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Down for maintenance</title>"
    "<h1>Down for maintenance</h1><p>This app is being worked on. Please try again in a few minutes.</p>"
)


def app_maintenance_set(
    *, app: App, enabled: bool, page: str | None = None, actor, remote_addr: str | None = None
) -> App:
    """Maintenance mode, as Heroku's: the router answers every hostname of the app with its page (given, kept from
    before, or Berth's) with 503 and Retry-After; its processes keep running, deploys and scaling go on. The router
    is changed first, every hostname or none (RouterError), then the app's row."""
    if not isinstance(enabled, bool):
        raise ValidationError({"maintenance": "must be true or false"})
    if page is not None and not isinstance(page, str):
        raise ValidationError({"maintenance_page": "must be HTML text"})
    page = app.maintenance_page if page is None else page
    size = len(page.encode())
    if size > MAINTENANCE_PAGE_MAX:
        raise ValidationError(
            {
                "maintenance_page": f"is {size} bytes; the limit is {MAINTENANCE_PAGE_MAX} (link to larger assets)"
            }
        )
    router = get_router()
    hostnames = app_hostnames(app)
    done: list[str] = []
    try:
        for hostname in hostnames:
            if enabled:
                router.host_maintenance_put(hostname=hostname, page=page or MAINTENANCE_PAGE)
            else:
                router.host_maintenance_remove(hostname=hostname)
            done.append(hostname)
    except RouterError:
        for hostname in done:  # back to what the router did before: all or nothing
            try:
                if app.maintenance:
                    router.host_maintenance_put(
                        hostname=hostname, page=app.maintenance_page or MAINTENANCE_PAGE
                    )
                else:
                    router.host_maintenance_remove(hostname=hostname)
            except RouterError:
                logger.exception("maintenance of %s: undoing %s failed", app.name, hostname)
        raise
    with transaction.atomic():
        App.objects.filter(pk=app.pk).update(maintenance=enabled, maintenance_page=page)
        app.maintenance, app.maintenance_page = enabled, page
        audit_record(
            action="app.maintenance.on" if enabled else "app.maintenance.off",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            data={"own_page": bool(page)},
        )
    return app


def app_maintenance_follow(app: App) -> None:
    """Put a hostname the app gained while in maintenance (a domain added, a router restarted) in maintenance too;
    called where the router is given the app's hostnames (berth.deploys.rollout.app_route)."""
    if app.maintenance:
        router = get_router()
        for hostname in app_hostnames(app):
            router.host_maintenance_put(hostname=hostname, page=app.maintenance_page or MAINTENANCE_PAGE)


def _maintenance_clear(hostnames: list[str]) -> None:
    router = get_router()
    for hostname in hostnames:
        try:
            router.host_maintenance_remove(hostname=hostname)
        except RouterError:
            logger.exception("maintenance: %s left in the router's maintenance map", hostname)


def config_replace(*, app: App, config: dict[str, str]) -> None:
    """Make the app's config vars exactly `config` (a rollback's: the old release's), without a release of its own:
    the next push or config change then builds on what the rollback brought back, as on Heroku."""
    with transaction.atomic():
        app_row_lock(app=app)
        ConfigVar.objects.filter(app=app).exclude(key__in=list(config)).delete()
        for key, value in config.items():
            ConfigVar.objects.update_or_create(
                app=app, key=key, defaults={"value_encrypted": encrypt_text(value)}
            )


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
        if app.maintenance:
            transaction.on_commit(lambda: _maintenance_clear([host]))
