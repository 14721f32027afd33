"""Builds' side of other domains' outcomes: a release failed because its deploy's worker died ends its build.

The deploys' sweep fails a release left `deploying` once its app lock has expired (LOCK_TTL, ~30 s after the
worker died). The build that rolled it out is still `building` then, and its pusher still follows the build's
stream: without this, both wait for the builds' heartbeat grace (45 s) and the next sweep after it.
"""

from datetime import timedelta

from django.utils import timezone

from berth.builds import services
from berth.builds.models import ACTIVE_BUILD_STATUSES, Build, BuildStatus
from berth.core.sweep import register_sweeper
from berth.releases.models import Release, ReleaseStatus

# A live worker beats every HEARTBEAT_SECONDS and fails its own build within moments of its release failing; a
# build silent for three beats whose release failed has no worker left to do it.
SILENT_WORKER = timedelta(seconds=3 * services.HEARTBEAT_SECONDS)


def build_end_with_release(*, release: Release) -> int:
    """Fail the active builds of a failed `release` whose worker is silent, ending their streams with the reason.

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
        if services.build_transition(
            build=build, from_statuses=ACTIVE_BUILD_STATUSES, to_status=BuildStatus.FAILED, reason=reason
        ):
            services._finish_log(build, reason, BuildStatus.FAILED)
            fixed += 1
    return fixed


@register_sweeper
def builds_of_failed_releases_sweep() -> int:
    """Fail builds still running for a release the deploys' sweep failed (registered after it: same pass)."""
    releases = Release.objects.filter(
        status=ReleaseStatus.FAILED, builds__status__in=ACTIVE_BUILD_STATUSES
    ).distinct()
    return sum(build_end_with_release(release=release) for release in releases)
