"""Reads of log drains."""

from django.db.models import QuerySet

from berth.apps.models import App
from berth.drains.models import Drain


def drains_for_app(app: App) -> QuerySet[Drain]:
    return Drain.objects.filter(app=app).order_by("pk")


def drains_all() -> list[Drain]:
    """Every drain with its app's name, as the forwarder walks them."""
    return list(Drain.objects.select_related("app").order_by("pk"))
