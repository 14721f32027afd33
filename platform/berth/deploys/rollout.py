"""Rolling a release out: release phase, health-gated cut-over (preboot), drain, automatic rollback; and keeping
the router in step with what runs (reconcile), as the seed's etcd+confd / Marathon+HAProxy pattern does.

Only this module combines the scheduler (Swarm) and the router (HAProxy); each stays behind its own seam.
"""

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable

import redis
from django.db import transaction
from django.db.models import prefetch_related_objects

from berth.apps.models import App, Formation
from berth.apps.selectors import app_hostnames
from berth.apps.services import app_maintenance_follow, config_replace
from berth.audit.services import audit_record
from berth.core.env import env_int
from berth.core.locks import HeldAppLock, app_lock
from berth.core.redis import redis_client
from berth.deploys.errors import DeployError
from berth.deploys.events import app_event
from berth.deploys.retiring import RETIRING_KEY
from berth.deploys.selectors import live_release
from berth.deploys.signals import releases_retired
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create, release_image_available, release_set_status
from berth.routing.router import Endpoint, clean_hostnames, get_router
from berth.runtime.health import http_probe, http_ready, startup_check
from berth.runtime.oneoff import run_oneoff
from berth.runtime.scheduler import ProcessSpec, Scheduler, SchedulerError, TaskInfo, get_scheduler

logger = logging.getLogger(__name__)

# seconds for a new release's web tasks to answer, as on Heroku; BERTH_BOOT_TIMEOUT shortens it for tests
BOOT_TIMEOUT = env_int("BERTH_BOOT_TIMEOUT", 60, minimum=5, maximum=3600)
RELEASE_PHASE_TIMEOUT = 15 * 60
LOG_TAIL = 20


def _processes(release: Release) -> dict[str, str | None]:
    """Process types to run. An image deploy without a Procfile runs the image's own command as `web`."""
    processes = {name: command for name, command in (release.procfile or {}).items() if name != "release"}
    return processes or {"web": None}


def process_specs(release: Release):
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
                # placement on node labels (berth ps:place), when the formation carries them
                constraints=list(getattr(row, "constraints", None) or []),
            )
        )
    return specs


def web_endpoints(*, app_name: str, release: int, generation: int | None = None):
    return [
        Endpoint(task.node_address, task.published_port)
        for task in get_scheduler().tasks(app=app_name, release=release, process="web", generation=generation)
        if task.running and task.published_port
    ]


def process_wait_ready(*, app: App, spec, deadline: float, checks: list[dict] | None = None) -> None:
    """Wait until spec's tasks run and, for web, each answers Berth's HTTP check, or passes each of `checks` (the
    release's app.json startup checks, berth.builds.manifest) when it has some; DeployError otherwise."""
    scheduler = get_scheduler()

    def answers(task: TaskInfo) -> bool:
        status = http_probe(task.node_address, task.published_port, app.health_check_path, timeout=0.5)
        return status is not None and status < 500

    tasks = scheduler.wait_running(
        app=app.name,
        release=spec.release,
        process=spec.process,
        replicas=spec.replicas,
        timeout=max(5.0, deadline - time.monotonic()),
        generation=spec.generation,
        answers=answers if spec.is_web else None,
    )
    if not spec.is_web:
        return
    for task in tasks:
        exited: list[TaskInfo] = []
        still_running = functools.partial(_task_still_running, scheduler, spec=spec, task=task, exited=exited)
        failed_check = None
        if checks:
            failed_check = _startup_checks_failed(task, checks, still_running)
        elif not http_ready(
            task.node_address,
            task.published_port,
            app.health_check_path,
            timeout=max(1.0, deadline - time.monotonic()),
            interval=0.1,  # refused at once while it boots: asking often costs little, and the deploy waits on it
            still_worth_it=still_running,
        ):
            failed_check = (
                f"web did not answer HTTP on $PORT at {app.health_check_path} within {BOOT_TIMEOUT} s"
                f" (status 500 or above, or nothing listening)"
            )
        if failed_check is not None:
            if exited:
                try:
                    last_lines = scheduler.task_logs(task.id, tail=LOG_TAIL)
                except Exception:  # noqa: BLE001 - its container may be gone already: the exit still says why
                    last_lines = []
                raise DeployError(
                    "\n".join(
                        [
                            f"{spec.process} exited while booting, before it answered HTTP on $PORT "
                            f"({exited[0].last_error or exited[0].state}); its last lines:",
                            *last_lines,
                        ]
                    )
                )
            raise DeployError(failed_check)


def _startup_checks_failed(
    task: TaskInfo, checks: list[dict], still_running: Callable[[], bool]
) -> str | None:
    """Run app.json's startup checks on one new web task, in order; the words of the first that failed, or None."""
    for check in checks:
        passed, outcome = startup_check(
            task.node_address,
            task.published_port,
            path=check["path"],
            attempts=check["attempts"],
            timeout=check["timeout"],
            wait=check["wait"],
            initial_delay=check["initialDelay"],
            content=check.get("content", ""),
            still_worth_it=still_running,
        )
        if not passed:
            name = f" {check['name']!r}" if check.get("name") else ""
            return (
                f"web did not pass app.json's startup check{name} (GET {check['path']}, {check['attempts']} "
                f"attempts): {outcome}"
            )
    return None


def _task_still_running(scheduler, *, spec, task, exited: list) -> bool:
    """Whether a booting web task still runs. A task that crashed will never answer on its port (Swarm's
    replacement gets another one): the deploy fails now with its exit (appended to `exited`), not at the timeout."""
    try:
        now = scheduler.tasks(
            app=spec.app, release=spec.release, process=spec.process, generation=spec.generation
        )
    except Exception:  # noqa: BLE001 - cannot tell right now: keep waiting, the boot timeout still bounds it
        return True
    current = next((t for t in now if t.id == task.id), None)
    if current is None:  # Swarm replaced it in its slot: it ended (the slot's last_error says how)
        current = next((t for t in now if t.slot == task.slot), None) or dataclasses.replace(
            task, state="gone"
        )
    elif current.state == "running":
        return True
    exited.append(current)
    return False


def _check_command(release: Release, specs) -> None:
    if (
        any(spec.command is None for spec in specs)
        and get_scheduler().image_has_command(release.image) is False
    ):
        raise DeployError(
            "the image has no command to run: give it a CMD, or the app a Procfile with a `web:` line"
        )


def release_tail(app_name: str, release: int) -> str:
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

    The phases, in order: claim the release (pending/built -> deploying) under the app lock; run its release
    command; start its processes and wait until each web task answers HTTP; route traffic to them (the router
    drains the old endpoints); retire the previous releases. If the release phase fails or the new web tasks are
    not ready within BOOT_TIMEOUT, the new services are removed, the release is marked failed with the reason and
    the app's last lines, and the old one keeps serving.
    """
    app = release.app
    scheduler = get_scheduler()
    with HeldAppLock(app.name, busy=DeployError):
        if not release_set_status(
            release=release,
            from_statuses=[ReleaseStatus.PENDING, ReleaseStatus.BUILT],
            to_status=ReleaseStatus.DEPLOYING,
        ):
            raise DeployError(f"v{release.version} is {release.status}, not ready to deploy")
        previous = list(Release.objects.filter(app=app, status=ReleaseStatus.LIVE).exclude(pk=release.pk))
        started = time.monotonic()
        try:
            _release_phase(release, log)
            _start_processes(release, scheduler, log)
            ready_at = time.monotonic()
            endpoints = web_endpoints(app_name=app.name, release=release.version)
            log(f"-----> Ready in {ready_at - started:.1f}s; switching traffic to v{release.version}")
            # the old release's drained endpoints stay out of rotation until its processes stop (retired in the
            # background below) and the watcher retires them: the processes close their idle keep-alive
            # connections themselves, where the router would reset them (Router.apply)
            app_route(app=app, endpoints=endpoints, retire_idle=False)
            routed_at = time.monotonic()
        except (DeployError, SchedulerError) as exc:
            raise _release_failed(release, scheduler, exc, log) from exc
        except Exception:
            scheduler.remove(app=app.name, release=release.version)
            release_set_status(
                release=release,
                from_statuses=[ReleaseStatus.DEPLOYING],
                to_status=ReleaseStatus.FAILED,
                reason="internal error",
            )
            raise
        _supersede_previous(previous)
        release_set_status(
            release=release, from_statuses=[ReleaseStatus.DEPLOYING], to_status=ReleaseStatus.LIVE
        )
        cutover = time.monotonic() - ready_at
        logger.info(
            "%s v%s: routed and old endpoints drained %.2fs after ready; the old services are removed in the "
            "background",
            app.name,
            release.version,
            routed_at - ready_at,
        )
        log(f"-----> v{release.version} is live at {app.url} (cut-over {cutover:.1f}s)")
        app_event(
            app.name,
            "release.live",
            f"v{release.version} is live ({release.description}); cut-over {cutover:.1f}s",
        )
    _retire_in_background(release, scheduler)
    return release


def _release_phase(release: Release, log: Callable[[str], None]) -> None:
    """Run the Procfile's `release:` command (migrations, as on Heroku) in a one-off container; DeployError if it
    exits non-zero: no process of the release was started yet."""
    release_command = (release.procfile or {}).get("release")
    if not release_command:
        return
    app = release.app
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


def release_postdeploy(
    *, release: Release, command: str, log: Callable[[str], None] = lambda line: None
) -> bool:
    """Run app.json's `scripts.postdeploy` once as a one-off of the live `release` (after the app's first deploy, as
    on Heroku), its output in `log`. A failure changes nothing that runs (the release is live) but is never silent:
    a line in `log`, the app's events and the audit log. Returns whether it succeeded."""
    app = release.app
    log(f"-----> Running app.json's postdeploy script: {command}")
    try:
        result = run_oneoff(
            app=app.name,
            team=app.team.name,
            release=release.version,
            image=release.image,
            command=command,
            env=release.config,
            on_line=lambda line: log(f"       {line}"),
            timeout=RELEASE_PHASE_TIMEOUT,
        )
        failure = None if result.exit_code == 0 else f"exit {result.exit_code}"
    except Exception as exc:  # noqa: BLE001 - the release is live whatever happened to its one-off: report it
        logger.exception("%s v%s: the postdeploy script could not run", app.name, release.version)
        failure = f"it could not run: {exc}"
    if failure is None:
        app_event(app.name, "release.postdeploy", f"v{release.version}: postdeploy script succeeded")
        return True
    message = (
        f"app.json's postdeploy script failed ({failure}); v{release.version} stays live; its output is above"
    )
    log(f"-----> warning: {message}")
    app_event(app.name, "release.postdeploy_failed", message)
    audit_record(
        action="release.postdeploy_failed",
        actor=None,
        team=app.team,
        target=f"{app.name} v{release.version}",
        data={"command": command, "failure": failure},
    )
    return False


def _start_processes(release: Release, scheduler: Scheduler, log: Callable[[str], None]) -> None:
    """Start every process type of the release beside the live one and wait until each is ready (web: answers
    HTTP on its port) within BOOT_TIMEOUT, which does not count the release phase."""
    specs = process_specs(release)
    _check_command(release, specs)
    boot_started = time.monotonic()
    for spec in specs:
        log(
            f"-----> Starting {spec.process} × {spec.replicas}"
            # new process types other than web start at 0, as on Heroku: say how to run them
            + (f" (run it with: berth ps:scale {spec.process}=1)" if spec.replicas == 0 else "")
        )
        scheduler.ensure_process(spec)
    checks = (release.healthchecks or {}).get("web")
    if checks:
        log(f"-----> Checking web with app.json's startup checks: {', '.join(c['path'] for c in checks)}")
    for spec in specs:
        if spec.replicas:
            process_wait_ready(
                app=release.app,
                spec=spec,
                deadline=boot_started + BOOT_TIMEOUT,
                checks=checks if spec.is_web else None,
            )


def _release_failed(
    release: Release, scheduler: Scheduler, exc: Exception, log: Callable[[str], None]
) -> DeployError:
    """Remove what the release started, mark it failed with the reason and its last lines, tell the deployer and
    the app's events; the DeployError to raise says whether a previous release keeps serving."""
    app = release.app
    tail = release_tail(app.name, release.version)
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
    # a first deploy has nothing to fall back on: say so rather than promise a previous release
    after = "the previous release keeps serving" if live_release(app) else "the app has no live release yet"
    app_event(app.name, "release.failed", f"v{release.version} failed: {exc}; {after}")
    return DeployError(f"{exc}; {after}")


def _supersede_previous(previous: list[Release]) -> None:
    """Traffic is on the new release and the router drained the old endpoints: the previous releases are
    superseded. Their services stop in the background (_retire_in_background), so the deployer (a `git push`) is answered
    as soon as the new release serves, not after the old containers' stop grace period."""
    for old in previous:
        release_set_status(
            release=old, from_statuses=[ReleaseStatus.LIVE], to_status=ReleaseStatus.SUPERSEDED
        )


# a release in one of these states never runs again (a rollback makes a new release): its services may go
RETIRED_STATUSES = (ReleaseStatus.SUPERSEDED, ReleaseStatus.FAILED, ReleaseStatus.ROLLED_BACK)


def retired_versions(*, app: App, scheduler: Scheduler) -> list[int]:
    """The releases of `app` that still have services but never run again: superseded, failed or rolled back, or
    with no release row at all. A release deploying or live is never among them, so removing them needs no app
    lock: a deploy running meanwhile loses nothing."""
    running = sorted({service.release for service in scheduler.services(app=app.name)})
    statuses = dict(Release.objects.filter(app=app, version__in=running).values_list("version", "status"))
    return [v for v in running if statuses.get(v, ReleaseStatus.SUPERSEDED) in RETIRED_STATUSES]


def _retire_in_background(release: Release, scheduler: Scheduler) -> threading.Thread | None:
    """Remove the replaced releases' services in a thread of this worker; returns it (None: nothing to remove).

    A thread rather than a task: the removal mostly waits for Swarm to stop the old containers (seconds), and a
    worker's pool slot held for that would delay the next queued builds; here the slot is free as soon as the
    release is live. What is removed is decided now, from the database; the thread touches only Swarm and Redis.
    Noted in Redis first: if this worker dies meanwhile, the sweep removes them.
    """
    versions = retired_versions(app=release.app, scheduler=scheduler)
    if not versions:
        return None
    member = f"{release.app.name}:{release.version}"
    redis_client().zadd(RETIRING_KEY, {member: time.time()})
    thread = threading.Thread(
        target=_retire,
        kwargs={
            "app_name": release.app.name,
            "app_id": release.app.pk,
            "versions": versions,
            "live": release.version,
            "scheduler": scheduler,
        },
        name=f"retire {member}",
        daemon=True,
    )
    thread.start()
    return thread


def _retire(
    *, app_name: str, versions: list[int], live: int, scheduler: Scheduler, app_id: int | None = None
) -> None:
    started = time.monotonic()
    if not versions:
        redis_client().zrem(RETIRING_KEY, f"{app_name}:{live}")
        return
    try:
        for version in versions:
            scheduler.remove(app=app_name, release=version)
    except Exception:  # noqa: BLE001 - left in Redis: the sweep tries again
        logger.exception("removing %s's replaced releases %s failed; the sweep retries", app_name, versions)
        return
    redis_client().zrem(RETIRING_KEY, f"{app_name}:{live}")
    names = ", ".join(f"v{version}" for version in versions)
    logger.info("%s: %s removed %.2fs after v%s went live", app_name, names, time.monotonic() - started, live)
    app_event(app_name, "release.retired", f"{names} drained and removed; v{live} serves")
    if app_id is not None:
        releases_retired.send(sender=None, app_id=app_id, versions=versions)


def release_retire(*, app: App, live: int) -> list[int]:
    """Remove, now, the services of `app`'s releases that never run again (retired_versions), and clear the
    retirement noted for its v`live`. Returns the versions removed."""
    scheduler = get_scheduler()
    versions = retired_versions(app=app, scheduler=scheduler)
    _retire(app_name=app.name, versions=versions, live=live, scheduler=scheduler, app_id=app.pk)
    return versions


def release_rollback(*, app: App, version: int, actor, remote_addr: str | None = None) -> Release:
    """A new release with vN's image, procfile and config, rolled out through the same cut-over."""
    target = Release.objects.filter(app=app, version=version).first()
    if target is None:
        raise DeployError(f"{app.name} has no release v{version}")
    if not target.image:
        raise DeployError(f"v{version} has no image to roll back to")
    release_image_available(target)  # ImagePruned (a 409) when the image GC removed it: nothing changes
    with transaction.atomic():
        config_replace(app=app, config=target.config)  # the app's config vars become vN's, as on Heroku
        release = release_create(
            app=app,
            image=target.image,
            procfile=target.procfile,
            description=f"Rollback to v{version}",
            actor=actor,
            status=ReleaseStatus.PENDING,  # deployed like a config release, by the receiver of release_created
            config=target.config,
            healthchecks=target.healthchecks,
        )
    audit_record(
        action="release.rollback",
        actor=actor,
        team=app.team,
        target=f"{app.name} v{version}",
        remote_addr=remote_addr,
        data={"new_version": release.version},
    )
    app_event(app.name, "release.rollback", f"rolling back to v{version} as v{release.version}")
    return release


# endpoints this process has routed, per app: a new endpoint must answer HTTP before the router gets it
_routed: dict[str, set] = {}


def app_route(*, app: App, endpoints: list, wait: bool = True, retire_idle: bool = True) -> None:
    get_router().apply(
        app=app.name, hostnames=app_hostnames(app), endpoints=endpoints, wait=wait, retire_idle=retire_idle
    )
    _routed[app.name] = set(endpoints)
    app_maintenance_follow(app)  # a hostname added while in maintenance is in maintenance too


def answering_endpoints(*, app: App, release: int) -> tuple[list, bool]:
    """The release's running web endpoints that were routed before or answer HTTP now; and whether some did not,
    or some web task is still starting (e.g. the replacement of a task on a lost node): worth asking again soon."""
    # what the router serves now counts as known, whichever process routed it (the deploy's worker or an earlier
    # watcher): a probe that times out on a busy machine must not take a serving endpoint out of the router
    known = _routed.get(app.name, set()) | get_router().routed_endpoints(app=app.name)
    tasks = get_scheduler().tasks(app=app.name, release=release, process="web")
    endpoints, waiting = [], any(t.desired_state == "running" and not t.running for t in tasks)
    for endpoint in [
        Endpoint(t.node_address, t.published_port) for t in tasks if t.running and t.published_port
    ]:
        if endpoint not in known:
            status = http_probe(endpoint.address, endpoint.port, app.health_check_path, timeout=1.0)
            if status is None or status >= 500:
                waiting = True
                continue
        endpoints.append(endpoint)
    return endpoints, waiting


def app_reconcile(app: App) -> bool:
    """Make the router match what runs: the live release's running web tasks (heals missed events, restarts).

    A task not routed before joins only once it answers Berth's HTTP check: Swarm reports a restarted task
    running before the app in it listens. Returns True when some task was left out for that reason, or is still
    starting (ask again soon).

    The app lock is held only while the router changes, not while removed endpoints drain: a slow request on a
    removed endpoint must hold up neither this app's next deploy nor the watcher's routing of every other app.
    """
    live = live_release(app)
    if live is None:
        return False
    lock = app_lock(app.name, timeout=30)
    # a deploy holding the lock owns the router for this app until it finishes; skip rather than wait
    if not lock.acquire(blocking=False):
        return False
    try:
        endpoints, waiting = answering_endpoints(app=app, release=live.version)
        app_route(app=app, endpoints=endpoints, wait=False)
        return waiting
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass


def apps_out_of_step(apps: list[App]) -> list[App]:
    """Those of `apps` whose routes may not match what runs, to be reconciled one by one (app_reconcile): the
    router's last applied routes differ from the live release's running web tasks or the app's hostnames, the
    router drifted from them (e.g. restarted, or an endpoint left draining after a cut-over), a web task is
    starting, or the app is in maintenance.

    One read of the router, of its drift and of the engine for all the apps, and two queries: the watcher's full
    round over hundreds of apps in step costs a few calls instead of a reconcile each (which asks the engine
    four times, and rewrites the router's records, per app).
    """
    router = get_router()
    applied = router.applied_routes()
    drifted = set(router.drifted())
    running: dict[tuple[str, int], list[TaskInfo]] = {}
    for task in get_scheduler().tasks_of_every_app(process="web"):
        running.setdefault((task.app, task.release), []).append(task)
    # the newest live release of each (a cut-over may briefly have two)
    live = dict(
        Release.objects.filter(app__in=apps, status=ReleaseStatus.LIVE)
        .order_by("version")
        .values_list("app_id", "version")
    )
    prefetch_related_objects(
        apps, "domains"
    )  # app_hostnames below, and app_reconcile after, query none per app
    out = []
    for app in apps:
        if app.pk not in live:
            continue
        tasks = running.get((app.name, live[app.pk]), [])
        endpoints = {
            Endpoint(t.node_address, t.published_port) for t in tasks if t.running and t.published_port
        }
        starting = any(t.desired_state == "running" and not t.running for t in tasks)
        try:
            hostnames = set(clean_hostnames(app_hostnames(app)))
        except ValueError:  # app_reconcile says what is wrong with it
            out.append(app)
            continue
        # an app in maintenance: its hostnames' maintenance entries are followed by app_route (app_reconcile)
        # only, and such apps are few
        in_step = applied.get(app.name) == (hostnames, endpoints) and app.name not in drifted
        if starting or app.maintenance or not in_step:
            out.append(app)
    return out


def app_teardown(*, name: str) -> None:
    get_router().remove(app=name)
    get_scheduler().remove(app=name)
