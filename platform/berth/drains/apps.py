from django.apps import AppConfig


class DrainsConfig(AppConfig):
    name = "berth.drains"
    label = "drains"
    verbose_name = "Log drains"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded): the forwarder runs inside the log shipper's process, which
        # (on a floor below) only knows it as one of its registered companions.
        from berth.drains import forwarder
        from berth.observe.shipper import companion_register

        companion_register(forwarder.forwarder_start)
