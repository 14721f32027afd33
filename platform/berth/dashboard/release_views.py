"""One release's page: what it runs (image and digest, Procfile, the names of its config vars — never their
values), who made it and when, how its roll-out went, and "roll back to this" through the app page's rollback form."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from berth.accounts.roles import MEMBER, VIEWER, role_at_least
from berth.accounts.selectors import user_role
from berth.apps import selectors as apps_selectors
from berth.builds.models import Build
from berth.dashboard.common import page
from berth.releases.models import ReleaseStatus
from berth.releases.selectors import release_for_app

# a release already running or on its way cannot be the target of a rollback from this page
NOT_ROLLBACK_TARGETS = (ReleaseStatus.LIVE, ReleaseStatus.DEPLOYING)


def image_parts(image: str) -> tuple[str, str]:
    """("registry/app", "sha256:…") for a digest reference; (image, "") for a tag or an empty image."""
    repository, _, digest = image.partition("@")
    return (repository, digest) if digest else (image, "")


@login_required
@require_GET
def release_detail(request: HttpRequest, app: str, version: int) -> HttpResponse:
    app = apps_selectors.app_for_user(user=request.user, name=app, min_role=VIEWER)
    role = user_role(user=request.user, team=app.team)
    release = release_for_app(app=app, version=version)
    can_edit = role_at_least(role, MEMBER)
    repository, digest = image_parts(release.image)
    config_keys = release.config_keys  # decrypted here, only their names leave this function
    context = {
        "app": app,
        "role": role,
        "release": release,
        "repository": repository,
        "digest": digest,
        "config_keys": config_keys if can_edit else None,
        "config_count": len(config_keys),
        "procfile": sorted(release.procfile.items()),
        "build": Build.objects.filter(release=release).select_related("created_by").order_by("-id").first(),
        "can_rollback": (
            can_edit
            and bool(release.image)
            and release.image_pruned_at is None
            and release.status not in NOT_ROLLBACK_TARGETS
        ),
    }
    return page(request, "dashboard/release.html", context)
