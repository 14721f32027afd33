from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "berth.deploys"
    label = "deploys"

    def ready(self) -> None:
        from berth.deploys import receivers  # noqa: F401  (connects the signals it listens to)
