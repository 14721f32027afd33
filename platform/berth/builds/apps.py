from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "berth.builds"
    label = "builds"

    def ready(self) -> None:
        from berth.builds import services  # noqa: F401 - registers the builds sweeper
