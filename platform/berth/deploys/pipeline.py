"""The pipeline of a push or an image deploy, in order: build the image (berth.builds), make the release
(berth.releases), roll it out (berth.deploys.rollout). One Build row follows the whole way: the pusher's `remote:`
lines are its log stream, and it succeeds only when its release is live.
"""

import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from berth.builds.errors import BuildCancelled, BuildError
from berth.builds.git import ref_move_if_pusher_left
from berth.builds.models import ACTIVE_BUILD_STATUSES, Build, BuildStatus
from berth.builds.services import (
    HEARTBEAT_SECONDS,
    BuildHeartbeat,
    BuildLog,
    build_fail,
    build_image,
    build_log_finish,
    build_transition,
)
from berth.core.sweep import register_sweeper
from berth.deploys.formation import formation_update
from berth.deploys.rollout import DeployError, release_deploy, release_postdeploy
from berth.deploys.signals import build_released
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create, release_set_status
from berth.runtime.registry import RegistryError, app_image_push, registry_enabled

logger = logging.getLogger(__name__)

# A live worker beats every HEARTBEAT_SECONDS and fails its own build within moments of its release failing; a
# build silent for three beats whose release failed has no worker left to do it.
SILENT_WORKER = timedelta(seconds=3 * HEARTBEAT_SECONDS)


def build_run(build_id: int) -> Build | None:
    """Run a queued build to its end: build or pull the image, make the release, roll it out.

    Idempotent: a build another worker already took (or that was cancelled) is left alone.
    """
    build = Build.objects.select_related("app", "app__team", "created_by").filter(pk=build_id).first()
    if build is None or not build_transition(
        build=build,
        from_statuses=[BuildStatus.QUEUED],
        to_status=BuildStatus.BUILDING,
        # who runs it: an operator (or a test) can find the process, and the sweep's line names it
        worker=f"{socket.gethostname()}:{os.getpid()}",
    ):
        return build
    log = BuildLog(build)
    with BuildHeartbeat(build.pk):
        outcome = _build_release_deploy(build, log)
    if outcome is None:
        if build.source == Build.Source.GIT:
            ref_move_if_pusher_left(build, log)
        if build_transition(
            build=build, from_statuses=[BuildStatus.BUILDING], to_status=BuildStatus.SUCCEEDED
        ):
            build_log_finish(build, None, BuildStatus.SUCCEEDED)
    elif outcome == BuildStatus.CANCELLED:
        if build_transition(
            build=build,
            from_statuses=[BuildStatus.BUILDING],
            to_status=BuildStatus.CANCELLED,
            reason="cancelled",
        ):
            build_log_finish(
                build, None if log.last.startswith("error:") else "error: build cancelled", outcome
            )
    else:
        build_fail(build, outcome, already_logged=log.last)
    build.refresh_from_db()
    return build


def _build_release_deploy(build: Build, log: BuildLog) -> str | None:
    """The work of build_run; None when the release is live, "cancelled", or the reason it failed."""
    app = build.app
    try:
        built = build_image(build, log)
        # the last moment a cancel is honoured: once the release exists its roll-out runs to its end
        if log.cancelled():
            log("error: the build was cancelled before its release")
            return BuildStatus.CANCELLED
        image = _push_to_registry(build, built.image, log)
        Build.objects.filter(pk=build.pk).update(image=image)
        manifest = built.manifest
        # app.json's formation and postdeploy script apply to the app's first release only, as on Heroku
        first_release = not Release.objects.filter(app=app).exists()
        release = release_create(
            app=app,
            image=image,
            procfile=built.procfile,
            description=built.description,
            actor=build.created_by,
            status="built",
            healthchecks=manifest.healthchecks if manifest is not None else {},
        )
        Build.objects.filter(pk=build.pk).update(release=release)
        if first_release and manifest is not None and manifest.formation:
            _first_formation(build, release, manifest.formation, log)
        log(f"-----> Releasing v{release.version}…")
        release_deploy(release=release, log=log)
        log(f"-----> Released v{release.version}")
        if first_release and manifest is not None and manifest.postdeploy:
            release_postdeploy(release=release, command=manifest.postdeploy, log=log)
        log(f"       {app.url} deployed to Berth")
        if settings.BERTH_ACME_DIRECTORY and settings.BERTH_HTTPS_PORT and not app.serves_https:
            # berth.certs issues it once the release is live (build_released, below): say so, as the URL is http
            log(f"       HTTPS: a certificate for {app.hostname} is being issued (berth certs -a {app.name})")
        build_released.send(sender=Build, app=app, manifest_cron=built.manifest_cron, actor=build.created_by)
    except BuildCancelled:
        return BuildStatus.CANCELLED
    except (BuildError, DeployError, ValueError) as exc:
        return str(exc)
    except Exception as exc:
        logger.exception("build %s crashed", build.pk)
        return f"internal error: {type(exc).__name__}: {exc}"
    return None


def _first_formation(build: Build, release: Release, formation: dict[str, dict], log: BuildLog) -> None:
    """Scale the app's first release as its app.json's `formation` asks (quantities; sizes are Heroku's dyno names,
    which Berth has not: `berth ps:scale` sets limits), within the team's quotas. A formation Berth refuses (a
    process type the Procfile lacks, a quota) fails the build before anything runs; the release is marked failed."""
    changes = [
        {"process": process, "replicas": spec["quantity"]} for process, spec in sorted(formation.items())
    ]
    try:
        formation_update(app=build.app, changes=changes, actor=build.created_by)
    except ValidationError as exc:
        words = "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in exc.message_dict.items()
        )
        reason = f"app.json: formation: {words}"
        release_set_status(
            release=release,
            from_statuses=[ReleaseStatus.BUILT],
            to_status=ReleaseStatus.FAILED,
            reason=reason,
        )
        raise BuildError(reason) from exc
    log("-----> Formation from app.json: " + ", ".join(f"{c['process']}={c['replicas']}" for c in changes))


def _push_to_registry(build: Build, image: str, log: BuildLog) -> str:
    """With a registry (BERTH_REGISTRY), push the image and return its digest reference `<registry>/<app>@sha256:…`,
    so every node runs the same bytes; without one, the local image as it is. A registry that refuses is a
    failed build with one clear line: nothing was released."""
    if not registry_enabled():
        return image
    try:
        return app_image_push(image=image, app_name=build.app.name, tag=build.registry_tag, log=log)
    except RegistryError as exc:
        raise BuildError(f"{exc}; nothing was deployed, the live release keeps serving") from exc


def build_end_with_release(*, release: Release) -> int:
    """Fail the active builds of a failed `release` whose worker is silent, ending their streams with the reason.

    The deploys' sweep fails a release left `deploying` once its app lock has expired (LOCK_TTL, ~30 s after the
    worker died). The build that rolled it out is still `building` then, and its pusher still follows the build's
    stream: without this, both wait for the builds' heartbeat grace (45 s) and the next sweep after it.
    Returns how many builds it failed. Safe to run twice and beside a live worker (a conditional transition).
    """
    if release.status != ReleaseStatus.FAILED:
        return 0
    silent_since = timezone.now() - SILENT_WORKER
    fixed = 0
    for build in Build.objects.filter(
        release=release, status__in=ACTIVE_BUILD_STATUSES, heartbeat_at__lt=silent_since
    ):
        reason = (
            f"error: the build worker {build.worker or '?'} stopped (killed or lost) while rolling out "
            f"v{release.version}: {release.status_reason or 'the release failed'}"
        )
        if build_transition(
            build=build, from_statuses=ACTIVE_BUILD_STATUSES, to_status=BuildStatus.FAILED, reason=reason
        ):
            build_log_finish(build, reason, BuildStatus.FAILED)
            fixed += 1
    return fixed


@register_sweeper
def builds_of_failed_releases_sweep() -> int:
    """Fail builds still running for a release the deploys' sweep failed (registered after it: same pass)."""
    releases = Release.objects.filter(
        status=ReleaseStatus.FAILED, builds__status__in=ACTIVE_BUILD_STATUSES
    ).distinct()
    return sum(build_end_with_release(release=release) for release in releases)
