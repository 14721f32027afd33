"""A destroyed app's logs, events and health samples go with it (as on Heroku); a new app of the same name starts
with none of them."""

from django.dispatch import receiver

from berth.apps.signals import app_destroyed
from berth.observe.services import app_streams_delete


@receiver(app_destroyed)
def remove_streams(sender, name: str, **kwargs) -> None:
    app_streams_delete(app=name)
