from django.db.models import QuerySet
from django.http import Http404

from berth.accounts.models import Team
from berth.addons.models import Addon
from berth.apps.models import App


def addons_for_app(*, app: App) -> QuerySet[Addon]:
    """The add-ons attached to `app`."""
    return (
        Addon.objects.filter(attachments__app=app).select_related("team").prefetch_related("attachments__app")
    )


def addons_for_team(*, team: Team) -> QuerySet[Addon]:
    return Addon.objects.filter(team=team).select_related("team").prefetch_related("attachments__app")


def addon_of_team(*, team: Team, name: str) -> Addon:
    """The team's add-on named `name`; NotFound (404) when it has none by that name, another team's included."""
    addon = addons_for_team(team=team).filter(name=name).first()
    if addon is None:
        raise Http404(f"no add-on named {name!r}")
    return addon
