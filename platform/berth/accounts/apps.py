from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "berth.accounts"
    label = "accounts"
