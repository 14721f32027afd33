from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "berth.hooks"
    label = "hooks"
    verbose_name = "Outbound webhooks and notifications"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of signal receivers and sweepers
        from berth.hooks import receivers  # noqa: F401 - connects the signal receivers
