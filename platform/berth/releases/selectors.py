from django.db.models import QuerySet

from berth.releases.models import Release, ReleaseStatus


def current_release(app) -> Release | None:
    """The newest live release, else the newest release, else None."""
    live = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    return live or Release.objects.filter(app=app).order_by("-version").first()


def latest_release(app) -> Release | None:
    return Release.objects.filter(app=app).order_by("-version").first()


def releases_for_app(*, app) -> QuerySet[Release]:
    return Release.objects.filter(app=app).select_related("created_by").order_by("-version")


def release_for_app(*, app, version: int) -> Release:
    from django.http import Http404

    release = Release.objects.filter(app=app, version=version).select_related("created_by").first()
    if release is None:
        raise Http404(f"release v{version} of {app.name} not found")
    return release
