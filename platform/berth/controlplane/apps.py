from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "berth.controlplane"
    label = "controlplane"
    verbose_name = "Control-plane backups"
