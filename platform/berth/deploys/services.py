"""Rolling a release out: release phase, health-gated cut-over (preboot), drain, automatic rollback; and keeping
the router in step with what runs (reconcile), as the seed's etcd+confd / Marathon+HAProxy pattern does.

Only this module combines the scheduler (Swarm) and the router (HAProxy); each stays behind its own seam.
"""

import logging
import time
from collections.abc import Callable

import redis
from django.conf import settings

from berth.apps.models import App, Formation
from berth.audit.services import audit_record
from berth.core.sweep import register_sweeper
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create, release_set_status

logger = logging.getLogger(__name__)

BOOT_TIMEOUT = 60  # seconds for a new release's web tasks to answer, as on Heroku
RELEASE_PHASE_TIMEOUT = 15 * 60
LOG_TAIL = 20


class DeployError(Exception):
    """A release could not be rolled out; the previous one keeps serving. The message is for the deployer."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)


def app_lock(app_name: str, timeout: int | None = None):
    """One roll-out (or reconcile) per app at a time, across workers and the watcher."""
    return _redis().lock(
        f"berth:lock:app:{app_name}",
        timeout=timeout or settings.BERTH_DEPLOY_TIMEOUT,
        blocking_timeout=settings.BERTH_DEPLOY_TIMEOUT,
    )


def app_hostnames(app: App) -> list[str]:
    return [
        f"{app.name}.{settings.BERTH_APPS_DOMAIN}".lower(),
        *app.domains.values_list("hostname", flat=True),
    ]


def _processes(release: Release) -> dict[str, str | None]:
    """Process types to run. An image deploy without a Procfile runs the image's own command as `web`."""
    processes = {name: command for name, command in (release.procfile or {}).items() if name != "release"}
    return processes or {"web": None}


def process_specs(release: Release):
    from berth.runtime.scheduler import ProcessSpec

    app = release.app
    formation = {row.process: row for row in Formation.objects.filter(app=app)}
    specs = []
    for process, command in _processes(release).items():
        row = formation.get(process)
        specs.append(
            ProcessSpec(
                app=app.name,
                team=app.team.name,
                release=release.version,
                process=process,
                image=release.image,
                command=command,
                env=release.config,
                replicas=row.replicas if row else (1 if process == "web" else 0),
                memory_mb=row.memory_mb if row else None,
                cpu=float(row.cpu) if row and row.cpu is not None else None,
            )
        )
    return specs


def web_endpoints(*, app_name: str, release: int):
    from berth.routing.router import Endpoint
    from berth.runtime.scheduler import get_scheduler

    return [
        Endpoint(task.node_address, task.published_port)
        for task in get_scheduler().tasks(app=app_name, release=release, process="web")
        if task.running and task.published_port
    ]


def _tail(app_name: str, release: int) -> str:
    from berth.runtime.scheduler import get_scheduler

    scheduler = get_scheduler()
    lines: list[str] = []
    for task in scheduler.tasks(app=app_name, release=release)[:3]:
        try:
            lines += scheduler.task_logs(task.id, tail=LOG_TAIL)
        except Exception:  # a task that never started has no logs; the error message says why
            pass
        if task.error:
            lines.append(f"[{task.process}] {task.error}")
    return "\n".join(lines[-LOG_TAIL:])


def release_deploy(*, release: Release, log: Callable[[str], None] = lambda line: None) -> Release:
    """Roll `release` out beside the live one, cut over only when it is ready, then drain and remove the old one.

    If the release phase fails or the new web tasks are not ready within BOOT_TIMEOUT, the new services are
    removed, the release is marked failed with the reason and the app's last lines, and the old one keeps serving.
    """
    from berth.routing.router import get_router
    from berth.runtime.health import http_ready
    from berth.runtime.oneoff import run_oneoff
    from berth.runtime.scheduler import SchedulerError, get_scheduler

    app = release.app
    scheduler = get_scheduler()
    with app_lock(app.name):
        if not release_set_status(
            release=release,
            from_statuses=[ReleaseStatus.PENDING, ReleaseStatus.BUILT],
            to_status=ReleaseStatus.DEPLOYING,
        ):
            raise DeployError(f"v{release.version} is {release.status}, not ready to deploy")
        previous = list(Release.objects.filter(app=app, status=ReleaseStatus.LIVE).exclude(pk=release.pk))
        started = time.monotonic()
        try:
            release_command = (release.procfile or {}).get("release")
            if release_command:
                log(f"-----> Running release command: {release_command}")
                result = run_oneoff(
                    app=app.name,
                    team=app.team.name,
                    release=release.version,
                    image=release.image,
                    command=release_command,
                    env=release.config,
                    on_line=lambda line: log(f"       {line}"),
                    timeout=RELEASE_PHASE_TIMEOUT,
                )
                if result.exit_code != 0:
                    raise DeployError(
                        f"the release command failed (exit {result.exit_code}); v{release.version} was not deployed"
                    )
            specs = process_specs(release)
            for spec in specs:
                log(f"-----> Starting {spec.process} × {spec.replicas}")
                scheduler.ensure_process(spec)
            hostnames = app_hostnames(app)
            for spec in specs:
                if spec.replicas == 0:
                    continue
                remaining = max(5.0, BOOT_TIMEOUT - (time.monotonic() - started))
                tasks = scheduler.wait_running(
                    app=app.name,
                    release=release.version,
                    process=spec.process,
                    replicas=spec.replicas,
                    timeout=remaining,
                )
                if spec.is_web:
                    for task in tasks:
                        remaining = max(1.0, BOOT_TIMEOUT - (time.monotonic() - started))
                        if not http_ready(
                            task.node_address, task.published_port, app.health_check_path, timeout=remaining
                        ):
                            raise DeployError(
                                f"web did not answer HTTP on $PORT at {app.health_check_path} within {BOOT_TIMEOUT} s"
                                f" (status 500 or above, or nothing listening)"
                            )
            endpoints = web_endpoints(app_name=app.name, release=release.version)
            log(f"-----> Ready in {time.monotonic() - started:.1f}s; switching traffic to v{release.version}")
            get_router().apply(app=app.name, hostnames=hostnames, endpoints=endpoints)
        except (DeployError, SchedulerError) as exc:
            tail = _tail(app.name, release.version)
            scheduler.remove(app=app.name, release=release.version)
            reason = str(exc) + (f"\nlast lines:\n{tail}" if tail else "")
            release_set_status(
                release=release,
                from_statuses=[ReleaseStatus.DEPLOYING],
                to_status=ReleaseStatus.FAILED,
                reason=reason,
            )
            audit_record(
                action="release.failed",
                actor=None,
                team=app.team,
                target=f"{app.name} v{release.version}",
                data={"reason": str(exc)},
            )
            for line in reason.splitlines():
                log(f"       {line}")
            raise DeployError(f"{exc}; the previous release keeps serving") from exc
        except Exception:
            scheduler.remove(app=app.name, release=release.version)
            release_set_status(
                release=release,
                from_statuses=[ReleaseStatus.DEPLOYING],
                to_status=ReleaseStatus.FAILED,
                reason="internal error",
            )
            raise
        # traffic is on the new release: the old ones were drained by the router; now remove their services
        for old in previous:
            scheduler.remove(app=app.name, release=old.version)
            release_set_status(
                release=old, from_statuses=[ReleaseStatus.LIVE], to_status=ReleaseStatus.SUPERSEDED
            )
        for stale in scheduler.services(app=app.name):
            if stale.release != release.version:
                scheduler.remove(app=app.name, release=stale.release)
        release_set_status(
            release=release, from_statuses=[ReleaseStatus.DEPLOYING], to_status=ReleaseStatus.LIVE
        )
        log(f"-----> v{release.version} is live at {app.url} (cut-over {time.monotonic() - started:.1f}s)")
    return release


def release_rollback(*, app: App, version: int, actor, remote_addr: str | None = None) -> Release:
    """A new release with vN's image, procfile and config, rolled out through the same cut-over."""
    target = Release.objects.filter(app=app, version=version).first()
    if target is None:
        raise DeployError(f"{app.name} has no release v{version}")
    if not target.image:
        raise DeployError(f"v{version} has no image to roll back to")
    release = release_create(
        app=app,
        image=target.image,
        procfile=target.procfile,
        description=f"Rollback to v{version}",
        actor=actor,
        status=ReleaseStatus.PENDING,  # deployed like a config release, by the receiver of release_created
        config=target.config,
    )
    audit_record(
        action="release.rollback",
        actor=actor,
        team=app.team,
        target=f"{app.name} v{version}",
        remote_addr=remote_addr,
        data={"new_version": release.version},
    )
    return release


def app_reconcile(app: App) -> None:
    """Make the router match what runs: the live release's running web tasks (heals missed events, scale)."""
    from berth.routing.router import get_router

    live = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    if live is None:
        return
    lock = app_lock(app.name, timeout=30)
    # a deploy holding the lock owns the router for this app until it finishes; skip rather than wait
    if not lock.acquire(blocking=False):
        return
    try:
        get_router().apply(
            app=app.name,
            hostnames=app_hostnames(app),
            endpoints=web_endpoints(app_name=app.name, release=live.version),
        )
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass


def formation_apply(*, app: App, processes: list[str]) -> None:
    """Scale the live release's services in place to the formation (the router follows by reconcile)."""
    from berth.runtime.scheduler import get_scheduler

    live = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    if live is None:
        return
    scheduler = get_scheduler()
    existing = {(s.process) for s in scheduler.services(app=app.name) if s.release == live.version}
    for spec in process_specs(live):
        if spec.process not in processes:
            continue
        if spec.process in existing:
            scheduler.scale(app=app.name, release=live.version, process=spec.process, replicas=spec.replicas)
        else:
            scheduler.ensure_process(spec)
        if spec.replicas:
            scheduler.wait_running(
                app=app.name,
                release=live.version,
                process=spec.process,
                replicas=spec.replicas,
                timeout=BOOT_TIMEOUT,
            )
    app_reconcile(app)


def app_teardown(*, name: str) -> None:
    from berth.routing.router import get_router
    from berth.runtime.scheduler import get_scheduler

    get_router().remove(app=name)
    get_scheduler().remove(app=name)


def app_processes(*, app: App) -> list[dict]:
    """What runs for the app, one row per task (`berth ps`)."""
    from berth.runtime.scheduler import get_scheduler

    rows = []
    for task in get_scheduler().tasks(app=app.name):
        rows.append(
            {
                "id": task.id,
                "process": task.process,
                "release": task.release,
                "state": task.state,
                "desired_state": task.desired_state,
                "node": task.node_id,
                "address": task.node_address,
                "port": task.published_port,
                "started_at": task.started_at,
                "restarts": task.restarts,
                "error": task.error,
            }
        )
    return rows


def _runnable_release(app: App) -> Release:
    live = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    if live is None or not live.image:
        raise DeployError(f"{app.name} has no live release to run a command in; deploy it first")
    return live


def oneoff_start(
    *, app: App, command: str, actor, detach: bool = False, remote_addr: str | None = None
) -> dict:
    """Start `command` in a container of the live release's image and config (`berth run`)."""
    from berth.runtime.oneoff import run_oneoff

    command = (command or "").strip()
    if not command or len(command) > 8192 or "\x00" in command:
        raise ValueError("command must be 1-8192 characters")
    release = _runnable_release(app)
    memory = Formation.objects.filter(app=app, process="web").values_list("memory_mb", flat=True).first()
    result = run_oneoff(
        app=app.name,
        team=app.team.name,
        release=release.version,
        image=release.image,
        command=command,
        env=release.config,
        detach=True,  # the caller follows the output over HTTP; a dropped connection leaves the run alone
        memory_mb=memory,
        labels={"org.berth.detach": "1" if detach else "0"},
    )
    audit_record(
        action="run.start",
        actor=actor,
        team=app.team,
        target=f"{app.name} v{release.version}",
        remote_addr=remote_addr,
        data={"command": command[:200], "detach": detach},
    )
    return {
        "id": result.container_id[:12],
        "release": release.version,
        "command": command,
        "status": "running",
    }


def oneoff_output(*, app: App, run_id: str):
    from berth.runtime.oneoff import oneoff_follow

    return oneoff_follow(run_id, app=app.name)


def oneoff_info(*, app: App, run_id: str) -> dict:
    from berth.runtime.oneoff import oneoff_status

    return oneoff_status(run_id, app=app.name)


@register_sweeper
def oneoffs_sweep() -> int:
    """Remove one-off containers nobody came back for (a day old), so runs do not pile up on the node."""
    from berth.runtime.oneoff import oneoff_prune

    return len(oneoff_prune(older_than=24 * 3600))
