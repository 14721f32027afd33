"""Celery tasks of scheduled jobs: thin, by id, safe to run twice."""

from celery import shared_task

from berth.jobs.services import cron_run_execute, cron_tick


@shared_task(name="berth.jobs.run", acks_late=True, time_limit=3 * 3600, soft_time_limit=3 * 3600 - 60)
def cron_run_task(run_id: int) -> str | None:
    """One run of a job, to its end (a redelivered task finds its run taken and returns)."""
    run = cron_run_execute(run_id=run_id)
    return run.status if run else None


@shared_task(name="berth.jobs.tick", acks_late=True, time_limit=120, soft_time_limit=100)
def cron_tick_task() -> int:
    """Celery beat, every few seconds: queue the due runs."""
    run_ids = cron_tick()
    for run_id in run_ids:
        cron_run_task.delay(run_id)
    return len(run_ids)
