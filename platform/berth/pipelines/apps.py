from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "berth.pipelines"
    label = "pipelines"
    verbose_name = "Pipelines"
