"""Writes of scheduled jobs: add and remove a job, the clock's tick that starts the due runs, and one run.

A tick (Celery beat, every few seconds: berth.jobs.tasks) takes each job whose `next_run_at` has passed, moves
`next_run_at` to the schedule's next minute after *now* and queues one run. So a scheduler that was down for an
hour runs a `*/15` job once when it comes back, not four times, and two ticks at once start a run only once (the
job row is locked and re-read). A job that does not allow overlap gets a `skipped` run while its last is going.

A run is a one-off container of the app's live release (berth.runtime.oneoff, as `berth run` and the release
phase), attached: its output goes line by line into the app's log as `scheduler[scheduler.<run id>]`, like
Heroku's scheduler dynos, between two platform lines that say when it started and how it ended.
"""

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from berth.apps.models import App, Formation
from berth.audit.services import audit_record
from berth.core.cron import CronError, cron_parse
from berth.core.env import env_int
from berth.core.sweep import register_sweeper
from berth.jobs.models import ACTIVE_RUN_STATUSES, CronJob, CronRun, CronRunStatus
from berth.observe.services import PLATFORM_PROCESS, log_entries_append, now_iso
from berth.releases.models import Release, ReleaseStatus
from berth.runtime.oneoff import run_oneoff
from berth.runtime.scheduler import LABEL_LOGGED_BY_RUNNER, SchedulerError

logger = logging.getLogger(__name__)

MAX_JOBS_PER_APP = 50
MAX_COMMAND_CHARS = 8192
LABEL_CRON_JOB = "org.berth.cron.job"
SCHEDULER_PROCESS = "scheduler"  # the `process` of a run's lines in the app's log (Heroku: scheduler.N)
# what a worker killed mid-run leaves `running`; the sweep fails it this long after its timeout
STUCK_GRACE = timedelta(minutes=5)
LOST_QUEUED = timedelta(hours=1)  # a queued run no worker took (its task lost) within this is failed


def run_timeout_seconds() -> int:
    """How long a run may take before it is killed (BERTH_CRON_TIMEOUT, seconds; read at call time)."""
    return env_int("BERTH_CRON_TIMEOUT", 30 * 60, minimum=10, maximum=2 * 3600)


def run_instance(run: CronRun) -> str:
    return f"{SCHEDULER_PROCESS}.{run.pk}"


def cron_job_add(
    *,
    app: App,
    schedule: str,
    command: str,
    allow_overlap: bool = False,
    actor=None,
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> CronJob:
    """Schedule `command` on `app` (cron expression in UTC). ValidationError naming the field if either is wrong."""
    try:
        parsed = cron_parse(schedule)
    except CronError as exc:
        raise ValidationError({"schedule": str(exc)}) from None
    command = (command or "").strip()
    if not command or len(command) > MAX_COMMAND_CHARS or "\x00" in command:
        raise ValidationError({"command": f"must be 1-{MAX_COMMAND_CHARS} characters"})
    with transaction.atomic():
        # the app row locked: two adds at once cannot both pass the cap
        App.objects.select_for_update().filter(pk=app.pk).first()
        if CronJob.objects.filter(app=app).count() >= MAX_JOBS_PER_APP:
            raise ValidationError(
                {"schedule": f"{app.name} has {MAX_JOBS_PER_APP} scheduled jobs, the most allowed"}
            )
        job = CronJob.objects.create(
            app=app,
            schedule=parsed.expression,
            command=command,
            allow_overlap=allow_overlap,
            next_run_at=parsed.next_after(now or timezone.now()),
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            action="cron.add",
            actor=actor,
            team=app.team,
            target=f"{app.name} #{job.pk}",
            remote_addr=remote_addr,
            data={"schedule": job.schedule, "command": command[:200], "allow_overlap": allow_overlap},
        )
    return job


def cron_jobs_from_manifest(
    *, app: App, entries: list[dict] | tuple[dict, ...], actor=None
) -> tuple[int, int]:
    """Make the app's app.json jobs exactly `entries` (schedule, command, allow_overlap; checked by the build):
    the ones still declared stay (their next time too), new ones are added, the rest of the manifest's removed. Jobs
    added by hand are not touched. Returns (added, removed)."""
    wanted = {(e["schedule"], e["command"], bool(e.get("allow_overlap"))) for e in entries}
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=app.pk).first()
        current = {
            (j.schedule, j.command, j.allow_overlap): j
            for j in CronJob.objects.filter(app=app, from_manifest=True)
        }
        gone = [job.pk for key, job in current.items() if key not in wanted]
        CronJob.objects.filter(pk__in=gone).delete()
        added = 0
        for schedule, command, overlap in sorted(wanted - set(current)):
            job = cron_job_add(
                app=app, schedule=schedule, command=command, allow_overlap=overlap, actor=actor
            )
            CronJob.objects.filter(pk=job.pk).update(from_manifest=True)
            added += 1
        if added or gone:
            audit_record(
                action="cron.manifest",
                actor=actor,
                team=app.team,
                target=app.name,
                data={"added": added, "removed": len(gone)},
            )
    return added, len(gone)


def cron_job_remove(*, app: App, job_id: int, actor=None, remote_addr: str | None = None) -> None:
    """Remove one of the app's jobs (CronJob.DoesNotExist if it has no such job). A run going on finishes."""
    job = CronJob.objects.get(app=app, pk=job_id)
    with transaction.atomic():
        audit_record(
            action="cron.remove",
            actor=actor,
            team=app.team,
            target=f"{app.name} #{job.pk}",
            remote_addr=remote_addr,
            data={"schedule": job.schedule, "command": job.command[:200]},
        )
        job.delete()


def cron_tick(*, now: datetime | None = None) -> list[int]:
    """Start the runs that are due at `now`: returns the ids of the runs queued (the caller hands them to workers).

    Safe to call from several places at once: each job is locked and re-read, and its next_run_at moves past
    `now` in the same transaction as its run is created.
    """
    now = now or timezone.now()
    queued: list[int] = []
    for job_id in CronJob.objects.filter(next_run_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            job = CronJob.objects.select_for_update().filter(pk=job_id, next_run_at__lte=now).first()
            if job is None:
                continue  # another tick took it, or it was removed
            due = job.next_run_at
            try:
                job.next_run_at = cron_parse(job.schedule).next_after(now)
            except CronError:
                logger.exception("cron job %s has an invalid schedule %r", job.pk, job.schedule)
                job.next_run_at = now + timedelta(days=365)
            job.save(update_fields=["next_run_at"])
            active = None if job.allow_overlap else job.runs.filter(status__in=ACTIVE_RUN_STATUSES).first()
            if active is not None:
                CronRun.objects.create(
                    job=job,
                    due_at=due,
                    status=CronRunStatus.SKIPPED,
                    reason=f"run {active.pk} was still {active.status} (overlap not allowed)",
                    finished_at=now,
                )
                continue
            queued.append(CronRun.objects.create(job=job, due_at=due).pk)
    return queued


def _log(app: str, run: CronRun, line: str, *, platform: bool = False) -> None:
    entry = {
        "ts": now_iso(),
        "process": PLATFORM_PROCESS if platform else SCHEDULER_PROCESS,
        "instance": run_instance(run),
        "stream": "platform" if platform else "stdout",
        "line": line,
    }
    try:
        log_entries_append(app=app, entries=[entry])
    except Exception:  # a lost log line is worth less than the run that printed it
        logger.exception("log line of %s %s not written", app, run_instance(run))


def _finish(run: CronRun, status: str, *, exit_code: int | None = None, reason: str = "") -> None:
    CronRun.objects.filter(pk=run.pk, status=CronRunStatus.RUNNING).update(
        status=status, exit_code=exit_code, reason=reason[:500], finished_at=timezone.now()
    )


def cron_run_execute(*, run_id: int) -> CronRun | None:
    """Run a queued run to its end in the app's live release. Idempotent: a run another worker took (or that
    ended) is left alone; None if it is gone (its job removed)."""
    started = timezone.now()
    if not CronRun.objects.filter(pk=run_id, status=CronRunStatus.QUEUED).update(
        status=CronRunStatus.RUNNING, started_at=started
    ):
        return CronRun.objects.filter(pk=run_id).first()
    run = CronRun.objects.select_related("job", "job__app", "job__app__team").get(pk=run_id)
    job, app = run.job, run.job.app
    release = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    if release is None or not release.image:
        reason = f"{app.name} has no live release to run the job in"
        _log(app.name, run, f"Job #{job.pk} not run: {reason}", platform=True)
        _finish(run, CronRunStatus.FAILED, reason=reason)
        return CronRun.objects.get(pk=run.pk)
    CronRun.objects.filter(pk=run.pk).update(release=release.version)
    _log(app.name, run, f"Starting job #{job.pk} in v{release.version}: {job.command}", platform=True)
    memory = Formation.objects.filter(app=app, process="web").values_list("memory_mb", flat=True).first()
    try:
        result = run_oneoff(
            app=app.name,
            team=app.team.name,
            release=release.version,
            image=release.image,
            command=job.command,
            env=release.config,
            on_line=lambda line: _log(app.name, run, line),
            timeout=run_timeout_seconds(),
            memory_mb=memory,
            # its lines are written here, tagged scheduler.N: the shipper would log them a second time as run.*
            labels={LABEL_CRON_JOB: str(job.pk), LABEL_LOGGED_BY_RUNNER: "1"},
        )
    except SchedulerError as exc:
        _log(app.name, run, f"Job #{job.pk} could not start: {exc}", platform=True)
        _finish(run, CronRunStatus.FAILED, reason=str(exc))
        return CronRun.objects.get(pk=run.pk)
    elapsed = (timezone.now() - started).total_seconds()
    reason = f"killed after {run_timeout_seconds()}s (BERTH_CRON_TIMEOUT)" if result.timed_out else ""
    ok = result.exit_code == 0 and not result.timed_out
    _log(
        app.name,
        run,
        f"Job #{job.pk} exited with status {result.exit_code} after {elapsed:.1f}s"
        + (f": {reason}" if reason else ""),
        platform=True,
    )
    _finish(
        run,
        CronRunStatus.SUCCEEDED if ok else CronRunStatus.FAILED,
        exit_code=result.exit_code,
        reason=reason,
    )
    return CronRun.objects.get(pk=run.pk)


@register_sweeper
def cron_runs_sweep() -> int:
    """Fail runs a killed worker left `running` past their timeout (or `queued` with no worker), so a job that
    does not allow overlap is not blocked forever."""
    now = timezone.now()
    stuck = CronRun.objects.filter(
        status=CronRunStatus.RUNNING,
        started_at__lt=now - timedelta(seconds=run_timeout_seconds()) - STUCK_GRACE,
    ).update(status=CronRunStatus.FAILED, reason="the run's worker stopped (killed or lost)", finished_at=now)
    lost = CronRun.objects.filter(status=CronRunStatus.QUEUED, created_at__lt=now - LOST_QUEUED).update(
        status=CronRunStatus.FAILED, reason="no worker took the run", finished_at=now
    )
    return stuck + lost
