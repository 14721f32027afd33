from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

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


def config_for_app(*, app: App) -> dict[str, str]:
    """The app's config vars, decrypted, sorted by key."""
    return {var.key: var.value for var in ConfigVar.objects.filter(app=app).order_by("key")}


def formation_for_app(*, app: App) -> QuerySet[Formation]:
    return Formation.objects.filter(app=app).order_by("process")


def app_hostnames(app: App) -> list[str]:
    """Every name the router serves the app at: <name>.<BERTH_APPS_DOMAIN>, then its custom domains."""
    # .all(): a list of apps with their domains prefetched (the watcher's full round) asks nothing more per app
    return [app.hostname, *(domain.hostname for domain in app.domains.all())]


def domains_for_app(*, app: App) -> QuerySet[Domain]:
    return Domain.objects.filter(app=app).order_by("hostname")


def app_for_hostname(hostname: str) -> App | None:
    """The app a request Host belongs to: <name>.<BERTH_APPS_DOMAIN> or a custom domain."""
    host = hostname.lower().split(":", 1)[0].rstrip(".")
    suffix = "." + settings.BERTH_APPS_DOMAIN.lower()
    if host.endswith(suffix) and "." not in host[: -len(suffix)]:
        return App.objects.filter(name=host[: -len(suffix)]).first()
    domain = Domain.objects.select_related("app").filter(hostname=host).first()
    return domain.app if domain else None


def domain_for_app(*, app: App, hostname: str) -> Domain:
    """The app's domain of that hostname (any case, a trailing dot or not); Http404 when it has none."""
    domain = Domain.objects.filter(app=app, hostname=hostname.lower().rstrip(".")).first()
    if domain is None:
        raise Http404(f"{hostname} is not a domain of {app.name}")
    return domain
