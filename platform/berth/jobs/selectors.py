"""Reads of scheduled jobs: an app's jobs with their last run (what `berth cron` and the dashboard show)."""

from django.db.models import Prefetch, QuerySet

from berth.apps.models import App
from berth.jobs.models import CronJob, CronRun, CronRunStatus


def cron_jobs_for_app(app: App) -> QuerySet[CronJob]:
    return CronJob.objects.filter(app=app).order_by("pk")


def cron_last_run(job: CronJob) -> CronRun | None:
    """The job's latest run that started (a skipped one is not a run)."""
    return job.runs.exclude(status=CronRunStatus.SKIPPED).order_by("-pk").first()


def cron_runs_for_job(job: CronJob, limit: int = 20) -> list[CronRun]:
    return list(job.runs.order_by("-pk")[:limit])


def cron_jobs_with_last_runs(app: App) -> list[tuple[CronJob, CronRun | None]]:
    jobs = cron_jobs_for_app(app).prefetch_related(
        Prefetch("runs", queryset=CronRun.objects.exclude(status=CronRunStatus.SKIPPED).order_by("-pk"))
    )
    return [(job, next(iter(job.runs.all()), None)) for job in jobs]
