from celery import shared_task

from berth.core.sweep import sweep_stuck_work


@shared_task(name="berth.core.tasks.sweep_stuck_work", time_limit=60, soft_time_limit=50)
def sweep_stuck_work_task() -> int:
    return sweep_stuck_work()
