"""The app page's add-ons panel (berth.addons): each add-on attached to the app with its state as the engine reports
it, and the actions on it. Who may do what is the API's rule for the same action (berth.api.permissions'
PERMISSION_MAP; tests/dashboard/test_addons_panel.py holds the two equal): viewers see, members create, capture and
verify, admins destroy and restore. Every POST checks the role again on the server; a refusal is a message and
changes nothing (the services are all-or-nothing).

This module does not import berth.dashboard.views: views.app_page imports `addon_panel` from here.
"""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from berth.accounts.roles import ADMIN, MEMBER, role_at_least
from berth.addons import backups, selectors, services
from berth.addons.models import KINDS, PLANS, Addon, BackupState
from berth.apps import selectors as apps_selectors
from berth.dashboard.common import attempt, client_ip

logger = logging.getLogger(__name__)

# the API's roles for the same actions (api:app-addons POST, api:app-addon DELETE, api:app-addon-backups POST,
# api:app-addon-backup-restore POST, api:app-addon-backup-verify POST)
ROLE_CREATE = MEMBER
ROLE_DESTROY = ADMIN
ROLE_CAPTURE = MEMBER
ROLE_VERIFY = MEMBER
ROLE_RESTORE = ADMIN
BACKUPS_SHOWN = 10


def _size_text(size: int | None) -> str:
    if size is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _addon_row(addon: Addon, app) -> dict:
    try:
        status = selectors.addon_status(addon=addon)
        status_error = None
    except Exception as exc:  # the page must render when Docker is down: the row says so instead
        logger.warning("status of add-on %s unavailable: %s", addon.name, exc)
        status = {"version": None, "running": None, "size_bytes": None, "connections": None, "node": None}
        status_error = f"cannot ask the engine right now ({type(exc).__name__})"
    schedule = backups.backup_schedule_of(addon)
    return {
        "name": addon.name,
        "kind": addon.kind,
        "plan": addon.plan,
        "running": status["running"],
        "status_error": status_error,
        "version": status["version"],
        "size": _size_text(status["size_bytes"]),
        "connections": status["connections"],
        "node": status["node"] or addon.node or "—",
        "config_var": next((a.config_var for a in addon.attachments.all() if a.app_id == app.pk), ""),
        "attachments": [{"app": a.app.name, "config_var": a.config_var} for a in addon.attachments.all()],
        "alarm": backups.backup_alarm(addon),
        "restore_effect": backups.restore_effect(addon.kind),  # what the app sees while a restore runs
        "schedule": f"daily at {schedule.at:%H:%M} UTC, newest {schedule.keep} kept" if schedule else None,
        "backups": [
            {
                "name": b.name,
                "state": b.state,
                "trigger": b.trigger,
                "size": _size_text(b.size),
                "started_at": b.started_at,
                "verified_at": b.verified_at,
                "error": b.error,
                "usable": b.state in backups.USABLE,
            }
            for b in backups.backups_of(addon)[:BACKUPS_SHOWN]
        ],
    }


def addon_panel(*, app, role: str | None) -> dict:
    """What the add-ons panel shows of `app` to someone of `role`: the attached add-ons and the allowed actions."""
    return {
        "rows": [_addon_row(addon, app) for addon in selectors.addons_for_app(app=app)],
        "kinds": KINDS,
        "plans": list(PLANS),
        "can_create": role_at_least(role, ROLE_CREATE),
        "can_destroy": role_at_least(role, ROLE_DESTROY),
        "can_capture": role_at_least(role, ROLE_CAPTURE),
        "can_verify": role_at_least(role, ROLE_VERIFY),
        "can_restore": role_at_least(role, ROLE_RESTORE),
    }


def _app(request: HttpRequest, name: str, min_role: str):
    """The app: 404 outside its team, 403 below `min_role` (as every dashboard action)."""
    return apps_selectors.app_for_user(user=request.user, name=name, min_role=min_role)


def _back(app) -> HttpResponse:
    return redirect(reverse("dashboard:app", kwargs={"app": app.name}) + "#addons")


def _attached_addon(app, name: str) -> Addon:
    """An add-on attached to `app` (the panel's rows); 404 for any other name, another team's included."""
    addon = selectors.addons_for_app(app=app).filter(name=name).first()
    if addon is None:
        raise Http404(f"no add-on named {name!r} attached to {app.name}")
    return addon


@login_required
@require_POST
def addon_create(request: HttpRequest, app: str) -> HttpResponse:
    app = _app(request, app, ROLE_CREATE)
    kind = request.POST.get("kind", "")
    ok, addon = attempt(
        request,
        services.addon_create,
        app=app,
        kind=kind,
        plan=request.POST.get("plan") or "small",
        name=request.POST.get("name", "").strip() or None,
        as_name=request.POST.get("as", "").strip() or None,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if ok:
        var = addon.attachments.get(app=app).config_var
        messages.success(request, f"Created {kind} add-on {addon.name}; {app.name}'s {var} points at it.")
    return _back(app)


@login_required
@require_POST
def addon_destroy(request: HttpRequest, app: str, addon: str) -> HttpResponse:
    app = _app(request, app, ROLE_DESTROY)
    addon = _attached_addon(app, addon)
    confirm = request.POST.get("confirm", "").strip()
    if confirm != addon.name:
        messages.error(
            request,
            f"type the add-on's name ({addon.name}) to confirm destroying it and its data; nothing changed",
        )
        return _back(app)
    name = addon.name
    if request.POST.get("backup", "on") == "on":
        ok, final = attempt(
            request,
            backups.addon_destroy_with_backup,
            addon=addon,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        if ok:
            messages.success(request, f"Destroyed {name}; its final backup is {name}/{final.name}.")
    else:
        ok, _ = attempt(
            request, services.addon_destroy, addon=addon, actor=request.user, remote_addr=client_ip(request)
        )
        if ok:
            messages.success(request, f"Destroyed {name} and its data (no final backup).")
    return _back(app)


@login_required
@require_POST
def backup_capture(request: HttpRequest, app: str, addon: str) -> HttpResponse:
    app = _app(request, app, ROLE_CAPTURE)
    addon = _attached_addon(app, addon)
    ok, backup = attempt(
        request, backups.backup_capture, addon=addon, actor=request.user, remote_addr=client_ip(request)
    )
    if ok:
        if backup.state == BackupState.FAILED:
            messages.error(request, f"Backup {backup.name} of {addon.name} failed: {backup.error}")
        else:
            messages.success(
                request, f"Captured backup {backup.name} of {addon.name} ({_size_text(backup.size)})."
            )
    return _back(app)


def _backup(app, addon: Addon, name: str):
    try:
        return backups.backup_of_team(team=app.team, ref=name, addon_name=addon.name)
    except Http404:
        raise Http404(f"no backup {name} of {addon.name}") from None


@login_required
@require_POST
def backup_verify(request: HttpRequest, app: str, addon: str, backup: str) -> HttpResponse:
    app = _app(request, app, ROLE_VERIFY)
    addon = _attached_addon(app, addon)
    ok, checked = attempt(request, backups.backup_verify, backup=_backup(app, addon, backup))
    if ok:
        if checked.state == BackupState.VERIFIED:
            messages.success(request, f"Backup {checked.name} restored into a throwaway server and matched.")
        else:
            messages.error(request, f"Backup {checked.name} failed its verification: {checked.error}")
    return _back(app)


@login_required
@require_POST
def backup_restore(request: HttpRequest, app: str, addon: str, backup: str) -> HttpResponse:
    app = _app(request, app, ROLE_RESTORE)
    addon = _attached_addon(app, addon)
    backup = _backup(app, addon, backup)
    if request.POST.get("confirm", "").strip() != addon.name:
        messages.error(
            request,
            f"type the add-on's name ({addon.name}) to confirm restoring {backup.name} over its data; nothing changed",
        )
        return _back(app)
    ok, seconds = attempt(
        request,
        backups.backup_restore,
        backup=backup,
        addon=addon,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if ok:
        messages.success(request, f"Restored {backup.name} into {addon.name} in {seconds:.1f} s.")
    return _back(app)
