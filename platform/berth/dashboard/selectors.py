"""Reads the dashboard pages combine from several domains (the domains' own selectors do the real work)."""

from django.db.models import OuterRef, QuerySet, Subquery

from berth.accounts.models import ApiToken
from berth.apps.models import App
from berth.builds.models import Build
from berth.releases.models import Release


def apps_with_status(*, apps: QuerySet[App]) -> QuerySet[App]:
    """`apps` annotated with the current release's status and the newest build's id and status (one query)."""
    releases = Release.objects.filter(app=OuterRef("pk"))
    live = releases.filter(status="live").order_by("-version").values("status")[:1]
    newest_release = releases.order_by("-version").values("status")[:1]
    builds = Build.objects.filter(app=OuterRef("pk")).order_by("-id")
    return apps.annotate(
        live_status=Subquery(live),
        newest_release_status=Subquery(newest_release),
        build_id=Subquery(builds.values("id")[:1]),
        build_status=Subquery(builds.values("status")[:1]),
    )


def app_state(row: dict) -> str:
    """One word for the apps list, from an app's row of apps_with_status: building, deploying, live, failed, ... or
    "new" before any release."""
    if row.get("build_status") in ("queued", "building"):
        return "building"
    if row.get("newest_release_status") == "deploying":
        return "deploying"
    if row.get("live_status") == "live":
        return "live"
    return row.get("newest_release_status") or "new"


def builds_for_app(*, app: App, limit: int = 10) -> QuerySet[Build]:
    return Build.objects.filter(app=app).select_related("created_by", "release").order_by("-id")[:limit]


def build_for_app(*, app: App, build_id: int) -> Build | None:
    return Build.objects.select_related("app", "release", "created_by").filter(app=app, pk=build_id).first()


def tokens_for_user(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at=None).order_by("-created_at")
