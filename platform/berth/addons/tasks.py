"""Celery tasks of berth.addons: thin, by id, safe to run twice (a scheduled backup claims its day with a
conditional update, so a redelivered or doubled task captures nothing more)."""

from celery import shared_task

from berth.addons.backups import backup_run_scheduled, backup_schedules_due, backups_sweep


@shared_task(name="berth.addons.backups_tick", acks_late=True, time_limit=120, soft_time_limit=100)
def backups_tick_task() -> int:
    """Every minute (beat): queue the scheduled backup of each add-on whose time has come today; fail captures a
    killed worker left."""
    backups_sweep()
    due = backup_schedules_due()
    for addon_id in due:
        backup_scheduled_task.delay(addon_id)
    return len(due)


# long: a capture and a verification by restore of a big database
@shared_task(
    name="berth.addons.backup_scheduled", acks_late=True, time_limit=7 * 3600, soft_time_limit=7 * 3600 - 60
)
def backup_scheduled_task(addon_id: int) -> str | None:
    """Capture, verify and prune one add-on's scheduled backup; nothing when it is not due or already taken."""
    backup = backup_run_scheduled(addon_id=addon_id)
    return f"{backup.addon_name}/{backup.name} {backup.state}" if backup else None
