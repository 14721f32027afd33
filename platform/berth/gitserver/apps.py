from django.apps import AppConfig


class GitserverConfig(AppConfig):
    name = "berth.gitserver"
    label = "gitserver"
    verbose_name = "Berth git server"

    def ready(self) -> None:
        from berth.gitserver import receivers  # noqa: F401 - connects the signal receivers
