from celery import shared_task


@shared_task(name="berth.nodes.tasks.images_gc", time_limit=30 * 60, soft_time_limit=25 * 60)
def images_gc_task(app_id: int | None = None) -> dict:
    """Prune old releases' images (of one app after its deploy; of every app hourly, from beat)."""
    from berth.apps.models import App
    from berth.nodes.images import images_gc

    app = None
    if app_id is not None:
        app = App.objects.filter(pk=app_id).first()
        if app is None:
            return {}  # deleted meanwhile
    return images_gc(app=app).as_dict()
