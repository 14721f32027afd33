from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "berth.deploys"
    label = "deploys"

    def ready(self) -> None:
        from berth.deploys import (  # noqa: F401
            receivers,  # connects the signals it listens to
            services,  # registers the sweepers (stuck deploys, old one-off runs)
        )
