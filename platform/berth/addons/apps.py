from django.apps import AppConfig


class AddonsConfig(AppConfig):
    name = "berth.addons"
    label = "addons"
    verbose_name = "Add-ons"
