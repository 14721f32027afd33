from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "berth.releases"
    label = "releases"
