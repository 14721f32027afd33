"""Preview apps, as Heroku's review apps: with previews on, a push of any branch other than the deploy branch makes
or updates the app <parent>--<branch> (hash-suffixed when too long), with the parent's config vars but those the
parent marks not for previews, and one web process; deleting the branch (`git push berth :branch`) destroys it.

The push is answered at once (the branch ref moves, the preview's URL and build are printed), so a preview never
holds the parent's push lock while it builds; its build runs on the workers' `previews` queue
(berth.deploys.receivers), apart from production's. Idle previews are reaped by the periodic sweep.
"""

import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from berth.accounts.errors import Conflict
from berth.apps.models import App
from berth.apps.selectors import config_for_app
from berth.apps.services import app_create, app_destroy, config_replace
from berth.builds import services as builds
from berth.builds.errors import BuildError
from berth.builds.models import Build
from berth.core.sweep import register_sweeper

logger = logging.getLogger(__name__)

SEPARATOR = "--"
APP_NAME_MAX = App._meta.get_field("name").max_length


def preview_name(parent: str, branch: str) -> str:
    """<parent>--<branch> as an app name (lowercase letters, digits, hyphens); past the length limit, cut and
    suffixed with a hash of the branch so two long branches never share a preview."""
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "branch"
    name = f"{parent}{SEPARATOR}{slug}"
    if len(name) <= APP_NAME_MAX:
        return name
    digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
    return f"{name[: APP_NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def preview_ensure(*, parent: App, branch: str, actor) -> tuple[App, bool]:
    """The preview app of `parent` for `branch`, made if missing (True when it is new): the parent's team, config
    vars without those in parent.preview_exclude. Conflict past BERTH_PREVIEWS_MAX per app."""
    existing = App.objects.filter(parent=parent, preview_branch=branch).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        App.objects.select_for_update().filter(
            pk=parent.pk
        ).first()  # two first pushes at once: one cap check
        count = App.objects.filter(parent=parent).count()
        if count >= settings.BERTH_PREVIEWS_MAX:
            raise Conflict(
                f"{parent.name} has {count} preview apps, the most allowed (BERTH_PREVIEWS_MAX); delete a branch "
                "to free one (git push berth :<branch>)"
            )
        name = preview_name(parent.name, branch)
        preview = app_create(
            team=parent.team,
            name=name,
            actor=actor,
            health_check_path=parent.health_check_path,
            buildpack=parent.buildpack,
        )
        App.objects.filter(pk=preview.pk).update(parent=parent, preview_branch=branch, deploy_branch=branch)
        preview.refresh_from_db()
        excluded = set(parent.preview_exclude or [])
        config_replace(
            app=preview, config={k: v for k, v in config_for_app(app=parent).items() if k not in excluded}
        )
    return preview, True


def preview_push(
    *, parent: App, branch: str, sha: str, repo: Path, actor, write_line: Callable[[str], None]
) -> bool:
    """Make or update the branch's preview from the pushed commit: queue its build and say where it will answer.
    False (the push is refused, nothing changed) when the commit cannot be read or the cap is reached."""
    try:
        source = builds.pushed_tree_export(repo=repo, sha=sha, prefix="preview")
    except BuildError as exc:
        write_line(f"error: {exc}")
        return False
    try:
        preview, created = preview_ensure(parent=parent, branch=branch, actor=actor)
        build = builds.build_create(
            app=preview,
            source=Build.Source.GIT,
            actor=actor,
            git_ref=f"refs/heads/{branch}",
            git_sha=sha,
            source_path=str(source),
        )
    except (Conflict, builds.BuildConflict) as exc:
        shutil.rmtree(source, ignore_errors=True)
        write_line(f"error: {exc}")
        return False
    builds.build_enqueue(build)
    write_line(
        f"-----> Preview app {preview.name} {'created' if created else 'updated'} for {branch} ({sha[:7]})"
    )
    write_line(f"       build {build.pk} queued: berth builds:output {build.pk} -a {preview.name}")
    write_line(f"       it will answer at {preview.url}")
    return True


def preview_delete(*, parent: App, branch: str, actor, write_line: Callable[[str], None]) -> None:
    preview = App.objects.filter(parent=parent, preview_branch=branch).first()
    if preview is None:
        return
    app_destroy(app=preview, actor=actor)
    write_line(f"-----> Preview app {preview.name} destroyed with its branch {branch}")


def previews_idle(*, now=None) -> list[App]:
    """Previews whose last build (or creation) is older than BERTH_PREVIEWS_IDLE_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BERTH_PREVIEWS_IDLE_DAYS)
    candidates = App.objects.filter(parent__isnull=False).annotate(last_build=Max("builds__created_at"))
    return [app for app in candidates if (app.last_build or app.created_at) < cutoff]


@register_sweeper
def previews_reap() -> int:
    """Destroy idle previews (a branch nobody pushed for BERTH_PREVIEWS_IDLE_DAYS days)."""
    reaped = 0
    for preview in previews_idle():
        try:
            app_destroy(app=preview, actor=None)
            reaped += 1
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.exception("reaping the idle preview %s failed", preview.name)
    return reaped
