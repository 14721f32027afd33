from django.apps import AppConfig


class ObserveConfig(AppConfig):
    name = "berth.observe"
    label = "observe"

    def ready(self) -> None:
        from berth.observe import receivers  # noqa: F401 - connects the signal receivers
