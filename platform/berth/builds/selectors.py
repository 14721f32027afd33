"""Reads of builds: who may watch one, and what a follower of its output needs to know."""

from django.db.models import QuerySet
from django.http import Http404

from berth.apps.selectors import app_for_user
from berth.builds.models import Build


def build_for_user(*, user, build_id: int, min_role: str) -> Build:
    """The build (with its app) if the user's role in its app's team is at least `min_role`.

    Http404 when it does not exist or is another team's; PermissionDenied when the role is too low (app_for_user).
    """
    build = Build.objects.select_related("app").filter(pk=build_id).first()
    if build is None:
        raise Http404("no such build")
    app_for_user(user=user, name=build.app.name, min_role=min_role)
    return build


def build_by_id(build_id: int) -> Build | None:
    return Build.objects.filter(pk=build_id).first()


def builds_for_app(*, app, limit: int = 50) -> QuerySet[Build]:
    """The app's latest `limit` builds, newest first, with what their listing shows."""
    return Build.objects.select_related("app", "release", "created_by").filter(app=app)[:limit]


def build_for_app(*, app, build_id: int) -> Build:
    """The app's build of that id; Http404 naming the app when it has none."""
    build = Build.objects.select_related("app", "release", "created_by").filter(app=app, pk=build_id).first()
    if build is None:
        raise Http404(f"{app.name} has no build {build_id}")
    return build
