from celery import shared_task

from berth.apps.models import App
from berth.nodes.images import app_images_remove, images_gc


@shared_task(name="berth.nodes.tasks.images_gc", acks_late=True, time_limit=30 * 60, soft_time_limit=25 * 60)
def images_gc_task(app_id: int | None = None) -> dict:
    """Prune old releases' images (of one app after its deploy; of every app hourly, from beat)."""
    app = None
    if app_id is not None:
        app = App.objects.filter(pk=app_id).first()
        if app is None:
            return {}  # deleted meanwhile
    return images_gc(app=app).as_dict()


@shared_task(
    name="berth.nodes.tasks.app_images_remove", acks_late=True, time_limit=30 * 60, soft_time_limit=25 * 60
)
def app_images_remove_task(name: str) -> dict:
    """Remove a destroyed app's images everywhere (idempotent: a re-run removes what is left)."""
    return app_images_remove(name=name).as_dict()
