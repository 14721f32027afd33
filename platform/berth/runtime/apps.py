from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "berth.runtime"
    label = "runtime"
