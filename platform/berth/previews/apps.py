from django.apps import AppConfig


class PreviewsConfig(AppConfig):
    name = "berth.previews"
    label = "previews"
    verbose_name = "Preview apps"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as the periodic sweep asks of its sweepers
        from berth.previews import services  # noqa: F401 - registers the idle previews' sweeper
