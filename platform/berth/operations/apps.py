from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "berth.operations"
    label = "operations"
