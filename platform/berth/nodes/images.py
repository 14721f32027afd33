"""Garbage collection of old releases' images: on the registry, on this manager and on every other node.

Kept for each app: the images of its last BERTH_IMAGE_RETENTION_RELEASES releases, of its live release and of
anything in flight (a release pending, built or deploying; a build still running). Every other release's image
is pruned: the release is marked first (a rollback to it is refused from then on), then its manifest is deleted
from the registry, the registry's blobs are collected, and the image is removed from every node. An image some
container still uses is never removed (the engine refuses; that counts as "in use, kept").

The engines do the removing (berth.runtime.images: this manager through the SDK, the other nodes through a Swarm
global job); the registry deletes manifests and collects blobs (berth.runtime.registry). This module decides what
goes.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from berth.apps.models import App
from berth.builds.models import ACTIVE_BUILD_STATUSES, Build, build_cache_ref, build_image_tag, build_run_ref
from berth.builds.stack import stack_image_ref
from berth.core.locks import app_lock
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import releases_mark_image_pruned
from berth.runtime import registry
from berth.runtime.images import (
    LOCAL_REPOSITORY,
    app_containers_wait_gone,
    local_images_remove,
    nodes_images_remove,
)

logger = logging.getLogger(__name__)


@dataclass
class AppPlan:
    """What the GC of one app keeps and prunes (image references as releases record them)."""

    app: str
    keep: set[str] = field(default_factory=set)
    prune: list[Release] = field(default_factory=list)  # Release rows whose image goes

    @property
    def prune_refs(self) -> list[str]:
        return list(dict.fromkeys(r.image for r in self.prune if r.image))


@dataclass
class GcReport:
    apps: int = 0
    releases_pruned: int = 0
    manifests_deleted: int = 0
    local_removed: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    registry_gc: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def app_plan(app: App, *, keep_releases: int | None = None) -> AppPlan:
    """Split the app's releases into the kept (last N, live, in flight) and the ones whose image goes."""
    keep_releases = keep_releases or settings.BERTH_IMAGE_RETENTION_RELEASES
    releases = list(Release.objects.filter(app=app).order_by("-version"))
    in_flight = {ReleaseStatus.LIVE, ReleaseStatus.PENDING, ReleaseStatus.BUILT, ReleaseStatus.DEPLOYING}
    kept = [r for i, r in enumerate(releases) if i < keep_releases or r.status in in_flight]
    plan = AppPlan(app=app.name, keep={r.image for r in kept if r.image})
    kept_ids = {r.pk for r in kept}
    plan.prune = [
        r
        for r in releases
        if r.pk not in kept_ids and r.image_pruned_at is None and r.image and r.image not in plan.keep
    ]
    return plan


def images_gc(
    *,
    app: App | None = None,
    keep_releases: int | None = None,
    log: Callable[[str], object] = lambda line: None,
) -> GcReport:
    """Prune old releases' images of `app` (or of every app): registry, manager, other nodes. Safe to re-run:
    a node that was down is cleaned at the next run (each node removes whatever of the app is not kept)."""
    report = GcReport()
    apps = [app] if app is not None else list(App.objects.all())
    plans = []
    for each in apps:
        # under the app lock: no deploy of this app starts (or rolls back) while its images are chosen
        lock = app_lock(each.name, timeout=60)
        if not lock.acquire(blocking_timeout=60):
            report.errors.append(f"{each.name}: a deploy held the app for a minute; skipped this time")
            continue
        try:
            plan = app_plan(each, keep_releases=keep_releases)
            active = Build.objects.filter(app=each, status__in=ACTIVE_BUILD_STATUSES).values_list(
                "tag_token", flat=True
            )
            protected = {build_image_tag(app_name=each.name, token=token) for token in active}
            protected.add(build_cache_ref(app_name=each.name))  # the dependency cache of its next build
            protected.add(build_run_ref(app_name=each.name))  # and the image it starts from
            releases_mark_image_pruned(releases=plan.prune)
            report.releases_pruned += len(plan.prune)
            report.apps += 1
            plans.append(plan)
            if registry.registry_enabled():
                report.manifests_deleted += _registry_delete(plan, report)
            _local_prune(plan, protected, report)
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile: nothing to release
                pass
        if plan.prune:
            log(f"{each.name}: pruned the images of {', '.join(f'v{r.version}' for r in plan.prune)}")
    if registry.registry_enabled() and plans:
        if report.manifests_deleted:
            try:
                report.registry_gc = registry.registry_garbage_collect()
            except registry.RegistryError as exc:
                report.errors.append(str(exc))
        try:
            _nodes_prune(plans, report)
        except Exception as exc:  # the next run cleans the nodes; the registry and the manager are done
            logger.exception("image GC on the nodes failed")
            report.errors.append(f"nodes: {exc}")
    return report


def app_images_remove(*, name: str) -> GcReport:
    """A destroyed app's images go everywhere: every tag in the registry, its images on the manager and on the
    other nodes. An image a container still uses is kept (and reported); running it again finishes the job."""
    report = GcReport(apps=1)
    plan = AppPlan(app=name)  # nothing kept
    app_containers_wait_gone(app_name=name)
    if registry.registry_enabled():
        credentials = {"user": settings.BERTH_REGISTRY_USER, "password": settings.BERTH_REGISTRY_PASSWORD}
        try:
            for digest in registry.repository_digests(
                registry=settings.BERTH_REGISTRY, repository=name, **credentials
            ):
                if registry.manifest_delete(
                    registry=settings.BERTH_REGISTRY, repository=name, digest=digest, **credentials
                ):
                    report.manifests_deleted += 1
        except Exception as exc:  # registry down or refusing: the rest still goes; a re-run retries this
            report.errors.append(f"{name}: the registry: {exc}")
        if report.manifests_deleted:
            try:
                report.registry_gc = registry.registry_garbage_collect()
            except registry.RegistryError as exc:
                report.errors.append(str(exc))
    _local_prune(plan, set(), report)
    try:
        _nodes_prune([plan], report)
    except Exception as exc:
        logger.exception("image removal on the nodes failed")
        report.errors.append(f"nodes: {exc}")
    return report


def _registry_delete(plan: AppPlan, report: GcReport) -> int:
    repository = registry.app_repository(plan.app)
    deleted = 0
    for ref in plan.prune_refs:
        name, _, digest = ref.partition("@")
        if name != repository or not registry.DIGEST.fullmatch(digest):
            continue  # not in Berth's registry (an image deployed by reference from elsewhere)
        try:
            if registry.manifest_delete(
                registry=settings.BERTH_REGISTRY,
                repository=plan.app,
                digest=digest,
                user=settings.BERTH_REGISTRY_USER,
                password=settings.BERTH_REGISTRY_PASSWORD,
            ):
                deleted += 1
        except (registry.RegistryError, OSError) as exc:
            report.errors.append(f"{plan.app}: {exc}")
        except Exception as exc:  # httpx: the registry is down; the next run deletes it
            report.errors.append(f"{plan.app}: deleting {digest[:19]} from the registry: {exc}")
    return deleted


def app_repositories(app_name: str) -> set[str]:
    repositories = {f"{LOCAL_REPOSITORY}/{app_name}"}
    if registry.registry_enabled():
        repositories.add(registry.app_repository(app_name))
    return repositories


def _local_prune(plan: AppPlan, protected: set[str], report: GcReport) -> None:
    """On this manager: remove the app's images that no kept release names and no running build made."""
    removed = local_images_remove(
        app_name=plan.app, repositories=app_repositories(plan.app), keep=plan.keep | protected
    )
    report.local_removed += removed.removed
    report.in_use += removed.in_use
    report.errors += removed.errors


def _nodes_prune(plans: list[AppPlan], report: GcReport) -> None:
    """On every other node of the swarm: a global job removes the apps' images that are not kept."""
    removed = nodes_images_remove(
        repositories={r for plan in plans for r in app_repositories(plan.app)},
        keep={ref for plan in plans for ref in plan.keep},
        stack_image=stack_image_ref(),
    )
    report.nodes_removed += removed.removed
    report.in_use += removed.in_use
    report.errors += removed.errors  # a node whose job failed or printed no result
