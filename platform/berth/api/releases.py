"""API v1 for an app's releases: the list, newest first, and one release by its version."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView
from berth.releases.models import Release
from berth.releases.selectors import release_for_app, releases_for_app


def release_repr(release: Release) -> dict:
    return {
        "version": release.version,
        "image": release.image,
        "description": release.description,
        "status": release.status,
        "created_by": release.created_by.get_username() if release.created_by else None,
        "created_at": release.created_at,
        "config_keys": release.config_keys,
        "procfile": release.procfile,
    }


class AppReleasesView(AppScopedView):
    @extend_schema(responses=S.Release(many=True))
    def get(self, request, app: str):
        return Response([release_repr(r) for r in releases_for_app(app=self.app)])


class AppReleaseView(AppScopedView):
    @extend_schema(responses=S.Release)
    def get(self, request, app: str, version: int):
        return Response(release_repr(release_for_app(app=self.app, version=version)))
