from django.apps import AppConfig


class ObserveConfig(AppConfig):
    name = "berth.observe"
    label = "observe"
