"""Celery tasks of berth.controlplane: thin; the tick is safe to run twice (a Redis lock and the index's newest
backup decide whether one is due)."""

from celery import shared_task

from berth.controlplane.services import backup_run_if_due


# long: a dump of the whole database, its archive and a verification by restoring it
@shared_task(
    name="berth.controlplane.backup_tick", acks_late=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60
)
def backup_tick_task() -> str | None:
    """Every few minutes (beat): the control plane's scheduled backup when BERTH_CONTROL_BACKUP_SCHEDULE says one
    is due, verified by a restore of its database, old ones pruned."""
    entry = backup_run_if_due()
    return f"{entry['name']} {entry['state']}" if entry else None
