from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "berth.routing"
    label = "routing"
