"""Add-on writes: create, attach, detach, rotate the password, destroy, and one-off client runs.

The database row and the engine move together: a create or rotation that fails on the engine leaves the rows as
they were (a half-made service is removed), and config vars change only through releases.services.config_update,
so attaching is a release that rolls the app like every config change.
"""

import re
import secrets
import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from berth.accounts.errors import Conflict
from berth.addons.models import DEFAULT_VARS, KINDS, PLANS, Addon, AddonAttachment
from berth.addons.selectors import addon_spec
from berth.apps.crypto import encrypt_text
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.releases.services import config_update
from berth.runtime.addons import (
    AddonRuntimeError,
    AddonSpec,
    addon_client_command,
    addon_image_ref,
    addon_node_resolve,
    addon_service_create,
    addon_service_remove,
    addon_service_update,
    addon_wait_ready,
)
from berth.runtime.oneoff import run_oneoff

ADDON_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,18}[a-z0-9]")  # <= 20: its service name must fit in 63
ATTACH_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")
RUN_TIMEOUT_S = 120
RUN_OUTPUT_MAX = 256 * 1024


def addon_url(addon: Addon) -> str:
    return addon_spec(addon).url


def _config_var(addon: Addon, as_name: str | None) -> str:
    if as_name is None:
        return DEFAULT_VARS[addon.kind]
    if not isinstance(as_name, str) or not ATTACH_NAME_RE.fullmatch(as_name):
        raise ValidationError({"as": "use letters, digits and _, starting with a letter (at most 41)"})
    name = as_name.upper()
    return name if name.endswith("_URL") else f"{name}_URL"


def addon_create(
    *,
    app: App,
    kind: str,
    plan: str = "small",
    name: str | None = None,
    as_name: str | None = None,
    node: str | None = None,
    actor,
    remote_addr: str | None = None,
) -> Addon:
    """Provision a new add-on server for `app`'s team (on `node`, a Swarm node's hostname or id, when given: it
    needs the add-on image; by default the node Berth runs on), wait until it answers, and attach it to `app`."""
    if kind not in KINDS:
        raise ValidationError({"kind": f"unknown add-on {kind!r}; one of: {', '.join(KINDS)}"})
    if plan not in PLANS:
        raise ValidationError({"plan": f"unknown plan {plan!r}; one of: {', '.join(PLANS)}"})
    if name is None:
        name = f"{kind}-{secrets.token_hex(3)}"
    elif not isinstance(name, str) or not ADDON_NAME_RE.fullmatch(name):
        raise ValidationError(
            {"name": "use 2-20 lowercase letters, digits and dashes, starting with a letter"}
        )
    _config_var(Addon(kind=kind), as_name)  # a bad --as is refused before anything is made
    try:
        node_id = addon_node_resolve(node) if node else None
    except AddonRuntimeError as exc:
        raise ValidationError({"node": str(exc)}) from exc
    try:
        with transaction.atomic():
            addon = Addon.objects.create(
                team=app.team,
                name=name,
                kind=kind,
                plan=plan,
                password_encrypted=encrypt_text(secrets.token_hex(24)),
            )
    except IntegrityError:
        raise Conflict(f"the team already has an add-on named {name!r}") from None
    spec = addon_spec(addon)
    try:
        addon.node = addon_service_create(spec, node_id=node_id)
        addon_wait_ready(spec)
    except AddonRuntimeError as exc:
        _remove_quietly(spec)
        addon.delete()
        raise Conflict(f"could not provision {kind} add-on {name}: {exc}") from exc
    addon.save(update_fields=["node"])
    audit_record(
        action="addon.create",
        actor=actor,
        team=app.team,
        target=name,
        remote_addr=remote_addr,
        data={"kind": kind, "plan": plan, "app": app.name},
    )
    try:
        addon_attach(addon=addon, app=app, as_name=as_name, actor=actor, remote_addr=remote_addr)
    except Exception:
        # attaching failed (the config var is taken, say): the new server goes too, nothing half-made stays
        _remove_quietly(spec)
        addon.delete()
        raise
    return addon


def _remove_quietly(spec: AddonSpec) -> None:
    try:
        addon_service_remove(spec)
    except AddonRuntimeError:
        pass  # the caller reports the first failure; leftovers are labelled and removed by a later destroy


def addon_attach(
    *, addon: Addon, app: App, as_name: str | None = None, actor, remote_addr: str | None = None
) -> AddonAttachment:
    """Give `app` the add-on's URL in a config var (DATABASE_URL, REDIS_URL or <AS>_URL): a new release."""
    if app.team_id != addon.team_id:
        raise Http404(f"no add-on named {addon.name!r}")
    config_var = _config_var(addon, as_name)
    try:
        with transaction.atomic():
            attachment = AddonAttachment.objects.create(addon=addon, app=app, config_var=config_var)
            config_update(
                app=app, changes={config_var: addon_url(addon)}, actor=actor, remote_addr=remote_addr
            )
            audit_record(
                action="addon.attach",
                actor=actor,
                team=app.team,
                target=addon.name,
                remote_addr=remote_addr,
                data={"app": app.name, "config_var": config_var},
            )
    except IntegrityError:
        taken = AddonAttachment.objects.filter(app=app, config_var=config_var).select_related("addon").first()
        if taken is not None:
            raise Conflict(
                f"{app.name}'s {config_var} already comes from add-on {taken.addon.name}; attach with --as NAME"
            ) from None
        raise Conflict(f"add-on {addon.name} is already attached to {app.name}") from None
    return attachment


def addon_detach(*, addon: Addon, app: App, actor, remote_addr: str | None = None) -> None:
    """Take the add-on's config var from `app` (a new release); the add-on and its data stay."""
    with transaction.atomic():
        attachment = AddonAttachment.objects.select_for_update().filter(addon=addon, app=app).first()
        if attachment is None:
            raise ValidationError({"app": f"add-on {addon.name} is not attached to {app.name}"})
        attachment.delete()
        config_update(app=app, changes={attachment.config_var: None}, actor=actor, remote_addr=remote_addr)
        audit_record(
            action="addon.detach",
            actor=actor,
            team=app.team,
            target=addon.name,
            remote_addr=remote_addr,
            data={"app": app.name, "config_var": attachment.config_var},
        )


def addon_destroy(*, addon: Addon, actor, remote_addr: str | None = None) -> None:
    """Detach the add-on from every app, then remove its service and its volume: its data is gone."""
    for attachment in list(addon.attachments.select_related("app")):
        addon_detach(addon=addon, app=attachment.app, actor=actor, remote_addr=remote_addr)
    try:
        addon_service_remove(addon_spec(addon))
    except AddonRuntimeError as exc:
        raise Conflict(f"could not remove add-on {addon.name}: {exc}") from exc
    team, name = addon.team, addon.name
    with transaction.atomic():
        addon.delete()
        audit_record(
            action="addon.destroy", actor=actor, team=team, target=name, remote_addr=remote_addr, data={}
        )


def addon_credentials_rotate(*, addon: Addon, actor, remote_addr: str | None = None) -> float:
    """A new password: the server restarts with it (the old one is refused from then on), then every attached
    app's config var gets the new URL (a release each). Returns the seconds the server took to answer again."""
    password = secrets.token_hex(24)
    spec = addon_spec(addon, password=password)
    try:
        addon_service_update(spec)
        waited = addon_wait_ready(spec)
    except AddonRuntimeError as exc:
        raise Conflict(f"could not rotate the credentials of {addon.name}: {exc}") from exc
    with transaction.atomic():
        addon.password_encrypted = encrypt_text(password)
        addon.save(update_fields=["password_encrypted"])
        for attachment in addon.attachments.select_related("app"):
            config_update(
                app=attachment.app,
                changes={attachment.config_var: spec.url},
                actor=actor,
                remote_addr=remote_addr,
            )
        audit_record(
            action="addon.credentials.rotate",
            actor=actor,
            team=addon.team,
            target=addon.name,
            remote_addr=remote_addr,
            data={"apps": [a.app.name for a in addon.attachments.select_related("app")]},
        )
    return waited


@dataclass(frozen=True)
class AddonRun:
    exit_code: int | None
    output: str
    timed_out: bool
    seconds: float


def addon_run(*, addon: Addon, app: App, args: list[str], actor, remote_addr: str | None = None) -> AddonRun:
    """`psql` or `redis-cli` with `args`, in a one-off run of the add-on's image on the team's network, reaching the
    server through `app`'s config var as the app does (pg:psql, redis:cli)."""
    attachment = AddonAttachment.objects.filter(addon=addon, app=app).first()
    if attachment is None:
        raise ValidationError({"app": f"add-on {addon.name} is not attached to {app.name}"})
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValidationError({"args": "must be a list of strings"})
    audit_record(
        action="addon.run",
        actor=actor,
        team=app.team,
        target=addon.name,
        remote_addr=remote_addr,
        data={"app": app.name, "client": "psql" if addon.kind == "postgres" else "redis-cli"},
    )
    lines: list[str] = []
    size = 0

    def keep(line: str) -> None:
        nonlocal size
        if size < RUN_OUTPUT_MAX:
            lines.append(line)
            size += len(line) + 1

    started = time.monotonic()
    try:
        result = run_oneoff(
            app=app.name,
            team=app.team.name,
            release=0,
            image=addon_image_ref(addon.kind),
            command=addon_client_command(addon.kind, attachment.config_var, args),
            env={attachment.config_var: addon_url(addon)},
            on_line=keep,
            timeout=RUN_TIMEOUT_S,
        )
    except AddonRuntimeError as exc:
        raise Conflict(str(exc)) from exc
    return AddonRun(
        exit_code=result.exit_code,
        output="\n".join(lines),
        timed_out=result.timed_out,
        seconds=round(time.monotonic() - started, 3),
    )
