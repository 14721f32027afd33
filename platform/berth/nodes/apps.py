from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "berth.nodes"
    label = "nodes"
