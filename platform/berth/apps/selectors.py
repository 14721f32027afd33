from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from berth.accounts.models import Team
from berth.accounts.roles import role_at_least
from berth.accounts.selectors import user_role
from berth.apps.models import App, ConfigVar, Domain, Formation


def app_for_user(*, user, name: str, min_role: str) -> App:
    """The named app if the user's role in its team is at least `min_role`.

    Http404 when it does not exist or the user is not in its team (so names of other teams' apps do not leak);
    PermissionDenied naming the role needed when the role is too low.
    """
    app = App.objects.select_related("team").filter(name=name).first()
    role = user_role(user=user, team=app.team) if app is not None else None
    if role is None:
        raise Http404(f"app {name!r} not found")
    if not role_at_least(role, min_role):
        raise PermissionDenied(
            f"this needs the {min_role} role (or higher) in team {app.team.name}; you are {role}"
        )
    return app


def _with_current_version(apps: QuerySet[App]) -> QuerySet[App]:
    # One query for a whole list: the newest live release's version, else the newest release's.
    from berth.releases.models import Release, ReleaseStatus

    releases = Release.objects.filter(app=OuterRef("pk")).order_by("-version").values("version")
    live = releases.filter(status=ReleaseStatus.LIVE)
    return apps.annotate(current_version=Coalesce(Subquery(live[:1]), Subquery(releases[:1])))


def apps_for_user(*, user) -> QuerySet[App]:
    """Apps of the user's teams (all apps for a superuser), with `current_version` annotated."""
    apps = App.objects.select_related("team").order_by("name")
    if not user.is_superuser:
        apps = apps.filter(team__memberships__user=user)
    return _with_current_version(apps)


def app_detail(*, app: App) -> App:
    return _with_current_version(App.objects.select_related("team").filter(pk=app.pk)).get()


def apps_for_team(*, team: Team) -> QuerySet[App]:
    return _with_current_version(App.objects.filter(team=team).order_by("name"))


def config_for_app(*, app: App) -> dict[str, str]:
    """The app's config vars, decrypted, sorted by key."""
    return {var.key: var.value for var in ConfigVar.objects.filter(app=app).order_by("key")}


def formation_for_app(*, app: App) -> QuerySet[Formation]:
    return Formation.objects.filter(app=app).order_by("process")


def domains_for_app(*, app: App) -> QuerySet[Domain]:
    return Domain.objects.filter(app=app).order_by("hostname")


def app_for_hostname(hostname: str) -> App | None:
    """The app a request Host belongs to: <name>.<BERTH_APPS_DOMAIN> or a custom domain."""
    from django.conf import settings

    host = hostname.lower().split(":", 1)[0].rstrip(".")
    suffix = "." + settings.BERTH_APPS_DOMAIN.lower()
    if host.endswith(suffix) and "." not in host[: -len(suffix)]:
        return App.objects.filter(name=host[: -len(suffix)]).first()
    domain = Domain.objects.select_related("app").filter(hostname=host).first()
    return domain.app if domain else None
