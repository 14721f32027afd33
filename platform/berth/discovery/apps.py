from django.apps import AppConfig


class DiscoveryConfig(AppConfig):
    name = "berth.discovery"
    label = "discovery"
