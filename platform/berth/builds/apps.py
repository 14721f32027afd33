from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "berth.builds"
    label = "builds"
