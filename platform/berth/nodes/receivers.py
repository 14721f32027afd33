"""Images follow their apps: a destroyed app's images go, and a deploy's old ones are collected at once on a
cluster. Disk bloat from dead apps and old releases is what people complain about."""

import logging

from django.dispatch import receiver

from berth.apps.signals import app_destroyed
from berth.deploys.signals import build_released, releases_retired
from berth.nodes.tasks import app_images_remove_task, images_gc_task
from berth.runtime.registry import registry_enabled

logger = logging.getLogger(__name__)


@receiver(app_destroyed)
def remove_images(sender, name: str, **kwargs) -> None:
    app_images_remove_task.delay(name)  # it waits for the teardown to stop the app's containers


@receiver(build_released)
def collect_old_images(sender, app, **kwargs) -> None:
    """After a deploy, queue the image GC of the app (registry and nodes; BERTH_IMAGE_RETENTION_RELEASES)."""
    if not registry_enabled():
        return  # one node: the hourly run (beat) is enough
    try:
        images_gc_task.delay(app_id=app.pk)
    except Exception:  # the hourly run collects them; a deploy is worth more than its cleanup
        logger.warning("could not queue the image GC of %s", app.name, exc_info=True)


@receiver(releases_retired)
def collect_retired_images(sender, app_id: int, **kwargs) -> None:
    """The replaced releases' containers are gone now: the GC queued at build_released may have found their images
    still in use, so collect again (cluster only, as above)."""
    if not registry_enabled():
        return
    try:
        images_gc_task.delay(app_id=app_id)
    except Exception:  # the hourly run collects them
        logger.warning("could not queue the image GC of app %s", app_id, exc_info=True)
