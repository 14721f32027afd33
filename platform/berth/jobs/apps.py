from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "berth.jobs"
    label = "jobs"
    verbose_name = "Scheduled jobs"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of sweepers and receivers: the stuck-run
        # sweep, and app.json's jobs kept in step with each live release
        from berth.jobs import receivers, services  # noqa: F401
