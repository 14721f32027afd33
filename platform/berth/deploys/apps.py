from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "berth.deploys"
    label = "deploys"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of signal receivers; the order is the
        # sweepers' order in one pass: stuck deploys first, then the builds of the releases that sweep failed.
        from berth.deploys import (  # noqa: F401
            pipeline,  # then the sweeper of builds whose release failed without their worker
            receivers,  # connects the signals it listens to
            sweeps,  # registers the sweepers of stuck deploys and old one-off runs
        )
