"""A destroyed app's repository goes with it: an app created later under the same name (by anyone) must not
clone or build the old code."""

from django.dispatch import receiver

from berth.apps.signals import app_destroyed
from berth.builds.repos import repo_delete


@receiver(app_destroyed)
def remove_repository(sender, name: str, **kwargs) -> None:
    repo_delete(app_name=name)
