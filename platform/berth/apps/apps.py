from django.apps import AppConfig


class AppsConfig(AppConfig):
    name = "berth.apps"
    label = "apps"
