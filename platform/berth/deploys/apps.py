from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "berth.deploys"
    label = "deploys"

    def ready(self) -> None:
        # Imported when Django is ready (models loaded), as Django asks of signal receivers and sweepers. The
        # order of the sweepers does not matter: releases_sweep ends the build of each release it fails itself.
        from berth.deploys import (  # noqa: F401
            pipeline,  # registers the sweeper of builds whose release failed without their worker
            receivers,  # connects the signals it listens to
            sweeps,  # registers the sweepers of stuck deploys and old one-off runs
        )
