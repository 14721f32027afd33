"""A destroyed app's images go too: disk bloat from dead apps is what people complain about."""

from django.dispatch import receiver

from berth.apps.signals import app_destroyed
from berth.nodes.tasks import app_images_remove_task


@receiver(app_destroyed)
def remove_images(sender, name: str, **kwargs) -> None:
    app_images_remove_task.delay(name)  # it waits for the teardown to stop the app's containers
