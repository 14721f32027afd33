from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "berth.dashboard"
    label = "dashboard"
