from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "berth.nodes"
    label = "nodes"

    def ready(self) -> None:
        from berth.nodes import receivers  # noqa: F401 - connects the signal receivers
