from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "berth.jobs"
    label = "jobs"
    verbose_name = "Scheduled jobs"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of sweepers: registers the stuck-run sweep
        from berth.jobs import services  # noqa: F401
