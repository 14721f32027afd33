from django.apps import AppConfig


class CertsConfig(AppConfig):
    name = "berth.certs"
    label = "certs"
    verbose_name = "Certificates"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of signal receivers and sweepers
        from berth.certs import receivers  # noqa: F401 - connects the signal receivers
