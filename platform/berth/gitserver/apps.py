from django.apps import AppConfig


class GitserverConfig(AppConfig):
    name = "berth.gitserver"
    label = "gitserver"
    verbose_name = "Berth git server"
