from django.db.models import QuerySet
from django.http import Http404

from berth.accounts.models import Team
from berth.addons.models import PLANS, Addon
from berth.apps.crypto import decrypt_text
from berth.apps.models import App
from berth.runtime.addons import AddonSpec, addon_image_version, addon_info


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


def addon_spec(addon: Addon, *, password: str | None = None) -> AddonSpec:
    """What the engine is told about `addon` (with `password` instead of the stored one, for a rotation)."""
    return AddonSpec(
        team=addon.team.name,
        name=addon.name,
        kind=addon.kind,
        password=password if password is not None else decrypt_text(addon.password_encrypted),
        memory_mb=PLANS[addon.plan],
    )


def addon_status(*, addon: Addon) -> dict:
    """What the running server says: its version (the image's Debian package), data size, client connections and
    the node it is pinned to."""
    return {"version": addon_image_version(addon.kind), **addon_info(addon_spec(addon))}
