"""The formation: how many copies of each process type run, with what limits. `formation_update` records a change
(the row write, with the team's quota checked); `formation_apply` rolls it out."""

import dataclasses
import logging
import time
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction

from berth.apps.models import App, Formation
from berth.apps.quotas import app_formation_rows, formation_usage, quota_check, team_quota_lock, team_usage
from berth.apps.signals import formation_changed
from berth.apps.validators import validate_process_name
from berth.audit.services import audit_record
from berth.builds.procfile import RELEASE_PROCESS
from berth.core.locks import HeldAppLock
from berth.deploys.errors import DeployError, NothingLive
from berth.deploys.events import app_event
from berth.deploys.rollout import (
    BOOT_TIMEOUT,
    answering_endpoints,
    app_route,
    process_specs,
    process_wait_ready,
    release_tail,
    web_endpoints,
)
from berth.deploys.selectors import live_release
from berth.deploys.signals import restart_requested
from berth.releases.selectors import latest_release
from berth.runtime.scheduler import SchedulerError, get_scheduler

logger = logging.getLogger(__name__)


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


def _audit_values(values: dict) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items()}


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
    known = (known - {RELEASE_PROCESS}) or {"web"}
    updates: dict[str, dict] = {}
    for item in changes:
        if not isinstance(item, dict):
            raise ValidationError({"formation": "each entry must be an object"})
        extra = set(item) - {"process", "replicas", "memory_mb", "cpu"}
        if extra:
            raise ValidationError({sorted(extra)[0]: "unknown field"})
        process = item.get("process")
        validate_process_name(process)
        if process == RELEASE_PROCESS:
            # the Procfile's release phase runs once per deploy (rollout._release_phase), never as a service
            message = f"{RELEASE_PROCESS!r} is the Procfile's release phase (run once per deploy), not scaled"
            raise ValidationError({"process": message})
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
        was: dict[str, dict] = {}  # the audit says old -> new: each changed field's value before
        for process, fields in updates.items():
            formation, created = Formation.objects.select_for_update().get_or_create(
                app=app, process=process, defaults=fields
            )
            was[process] = {k: None if created else getattr(formation, k) for k in fields}
            if not created and fields:
                Formation.objects.filter(pk=formation.pk).update(**fields)
        audit_record(
            action="formation.update",
            actor=actor,
            team=app.team,
            target=app.name,
            remote_addr=remote_addr,
            data={p: {**_audit_values(f), "was": _audit_values(was[p])} for p, f in updates.items()},
        )
        processes = sorted(updates)
        transaction.on_commit(lambda: formation_changed.send(sender=App, app=app, processes=processes))
    return list(Formation.objects.filter(app=app).order_by("process"))


def _generations(*, app: App, release: int, process: str) -> list[int]:
    return sorted(
        s.generation
        for s in get_scheduler().services(app=app.name)
        if s.release == release and s.process == process
    )


def _web_checks(release, spec) -> list[dict] | None:
    """The release's app.json startup checks for new web tasks (None: Berth's default HTTP check), so a web task
    started by a scale or a restart must pass what the deploy's had to."""
    return (release.healthchecks or {}).get("web") if spec.is_web else None


def _roll(*, app: App, spec, old_generations: list[int], checks: list[dict] | None = None) -> None:
    """Start `spec` (a new generation) beside the old ones, route to it when ready, then retire the old ones.

    The old generation keeps serving until the router has drained it; if the new one is not ready in time it
    is removed and DeployError says why.
    """
    scheduler = get_scheduler()
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        scheduler.ensure_process(spec)
        if spec.replicas:
            process_wait_ready(app=app, spec=spec, deadline=deadline, checks=checks)
        if spec.is_web:
            app_route(
                app=app,
                endpoints=web_endpoints(app_name=app.name, release=spec.release, generation=spec.generation),
            )
    except (DeployError, SchedulerError) as exc:
        tail = release_tail(app.name, spec.release)
        scheduler.remove(app=app.name, release=spec.release, process=spec.process, generation=spec.generation)
        raise DeployError(
            f"{exc}; the running {spec.process} processes were left alone"
            + (f"\nlast lines:\n{tail}" if tail else "")
        ) from exc
    for generation in old_generations:
        scheduler.remove(app=app.name, release=spec.release, process=spec.process, generation=generation)


def formation_apply(*, app: App, processes: list[str]) -> None:
    """Scale the live release's services to the formation, and route the app (also after a domain change).

    Web scales up in place: the new tasks join the router once they answer. Scaling web down, or changing its
    limits, starts a fresh set of tasks beside the old ones and drains the old ones: Swarm picks which tasks to
    stop by itself and would stop them under live requests.
    """
    live = live_release(app)
    if live is None:
        return
    scheduler = get_scheduler()
    with HeldAppLock(app.name, busy=DeployError):
        live = live_release(app)  # a deploy may have finished while this waited for the lock
        if live is None:
            return
        changes = []
        for spec in process_specs(live):
            if spec.process not in processes:
                continue
            generations = _generations(app=app, release=live.version, process=spec.process)
            current = dataclasses.replace(spec, generation=generations[-1] if generations else 0)
            running = next(
                (
                    s.replicas
                    for s in scheduler.services(app=app.name)
                    if s.release == live.version
                    and s.process == spec.process
                    and s.generation == current.generation
                ),
                None,
            )
            if running == spec.replicas and scheduler.spec_matches(current):
                continue
            changes.append(f"{spec.process}={spec.replicas}")
            if not spec.is_web or running is None:
                scheduler.ensure_process(current)
                if spec.replicas:
                    process_wait_ready(
                        app=app,
                        spec=current,
                        deadline=time.monotonic() + BOOT_TIMEOUT,
                        checks=_web_checks(live, spec),
                    )
                if spec.is_web:
                    app_route(app=app, endpoints=web_endpoints(app_name=app.name, release=live.version))
            elif spec.replicas == 0:
                app_route(app=app, endpoints=[])  # drained first, then stopped
                scheduler.ensure_process(current)
            elif spec.replicas > running and scheduler.spec_matches(current):
                scheduler.scale(
                    app=app.name,
                    release=live.version,
                    process=spec.process,
                    replicas=spec.replicas,
                    generation=current.generation,
                )
                process_wait_ready(
                    app=app,
                    spec=current,
                    deadline=time.monotonic() + BOOT_TIMEOUT,
                    checks=_web_checks(live, spec),
                )
                app_route(app=app, endpoints=web_endpoints(app_name=app.name, release=live.version))
            else:
                nxt = dataclasses.replace(spec, generation=current.generation + 1)
                _roll(app=app, spec=nxt, old_generations=generations, checks=_web_checks(live, spec))
        if not changes:
            # nothing to scale (or a domain changed): the router still follows what runs
            app_route(app=app, endpoints=answering_endpoints(app=app, release=live.version)[0])
    if changes:
        app_event(app.name, "scaled", f"scaled v{live.version}: {', '.join(changes)}")


def app_restart(*, app: App, process: str | None = None) -> list[str]:
    """Restart the live release's processes (one type, or all) without dropping a request.

    Each process type gets a fresh generation of tasks beside the old one; web's join the router once they
    answer and the old ones are drained before they stop. Returns the restarted process types.
    """
    live = live_release(app)
    if live is None:
        raise NothingLive(f"{app.name} has no live release to restart")
    specs = [spec for spec in process_specs(live) if process in (None, spec.process)]
    if process is not None and not specs:
        raise ValueError(f"unknown process type {process!r}")
    restarted = []
    with HeldAppLock(app.name, busy=DeployError):
        if live_release(app) != live:
            raise DeployError(f"{app.name} was deployed meanwhile; its processes are new already")
        started = time.monotonic()
        for spec in specs:
            generations = _generations(app=app, release=live.version, process=spec.process)
            if not spec.replicas:
                continue
            nxt = dataclasses.replace(spec, generation=(generations[-1] + 1) if generations else 0)
            try:
                _roll(app=app, spec=nxt, old_generations=generations, checks=_web_checks(live, spec))
            except DeployError as exc:
                app_event(
                    app.name, "restart.failed", f"restart of {spec.process} failed: {exc}".splitlines()[0]
                )
                raise
            restarted.append(spec.process)
    if restarted:
        app_event(
            app.name,
            "restarted",
            f"restarted {', '.join(restarted)} of v{live.version} in {time.monotonic() - started:.1f}s",
        )
    return restarted


def restart_request(*, app: App, process: str | None, actor, remote_addr: str | None = None) -> None:
    """Queue a rolling restart of one process type (or all), after refusing at once what app_restart would refuse:
    NothingLive without a live release, ValueError for a process type the live release does not run."""
    live = live_release(app)
    if live is None:
        raise NothingLive(f"{app.name} has no live release to restart; deploy it first")
    if process is not None and process not in {spec.process for spec in process_specs(live)}:
        known = ", ".join(sorted(spec.process for spec in process_specs(live)))
        raise ValueError(f"unknown process type {process!r}; this app has {known}")
    audit_record(
        action="ps.restart",
        actor=actor,
        team=app.team,
        target=app.name,
        remote_addr=remote_addr,
        data={"process": process},
    )
    restart_requested.send(sender=App, app=app, process=process)
