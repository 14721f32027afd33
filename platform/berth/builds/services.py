"""Writes for builds: create, move through states, run (build → release → deploy), cancel, sweep.

A build's whole life is here so the git hook, the API and the Celery task stay thin adapters.
"""

import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from berth.apps.models import App
from berth.apps.selectors import config_for_app
from berth.audit.services import audit_record
from berth.builds.builder import docker_build
from berth.builds.buildpacks import detect
from berth.builds.errors import BuildCancelled, BuildError
from berth.builds.images import (
    IMAGE_REFERENCE,
    ImageRefused,
    dockerfile_check,
    image_labels,
    image_reference_check,
    image_reference_pullable,
)
from berth.builds.logstream import LogStream
from berth.builds.manifest import AppManifest, manifest_read
from berth.builds.models import ACTIVE_BUILD_STATUSES, Build, BuildStatus, build_cache_ref, build_run_ref
from berth.builds.procfile import read_procfile
from berth.builds.repos import repo_path
from berth.builds.signals import build_failed, build_queued
from berth.builds.tree import UnsafePath, tree_export
from berth.core.env import env_int
from berth.core.redis import redis_client
from berth.core.sweep import register_sweeper
from berth.runtime.build import image_untag
from berth.runtime.pull import (
    ENGINE_ERRORS,
    PullCancelled,
    PullError,
    repository_and_tag,
)
from berth.runtime.pull import image_pull as engine_image_pull

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
QUEUED_GRACE = timedelta(minutes=10)


class BuildConflict(Exception):
    """Another build of the same app is still running."""


def heartbeat_grace() -> timedelta:
    """A build whose worker has not beaten for this long is dead (SIGKILL, lost node): the sweep fails it.

    Read on each sweep (not at import) so an operator, or a test, can shorten it without a new build of the code.
    """
    return timedelta(seconds=env_int("BERTH_BUILD_HEARTBEAT_GRACE", 45, minimum=3 * HEARTBEAT_SECONDS))


def build_deadline_seconds() -> int:
    """The latest a live build can end: its build timeout (enforced by the builder), then a whole roll-out."""
    return settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 60


def log_stream(build: Build) -> LogStream:
    return LogStream(redis_client(), build.stream_key)


def validate_image_ref(ref: str) -> str:
    # not stripped: a reference with whitespace or a control character around it is refused, not cleaned
    ref = ref if isinstance(ref, str) else ""
    if len(ref) > 512 or not IMAGE_REFERENCE.fullmatch(ref):
        raise ValueError(f"not a valid image reference: {ref[:80]!r} (expected e.g. registry:5000/name:tag)")
    return ref


def build_create(
    *,
    app: App,
    source: str,
    actor,
    git_ref: str = "",
    git_sha: str = "",
    image_ref: str = "",
    source_path: str = "",
    remote_addr: str | None = None,
) -> Build:
    """Queue a build. One build at a time per app: a second one is refused (BuildConflict) with a clear message."""
    if source == Build.Source.IMAGE:
        image_ref = validate_image_ref(image_ref)
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=app.pk).first()
        running = Build.objects.filter(app=app, status__in=ACTIVE_BUILD_STATUSES).first()
        if running is not None:
            raise BuildConflict(
                f"build {running.pk} of {app.name} is still {running.status}; wait for it or cancel it"
            )
        build = Build.objects.create(
            app=app,
            source=source,
            git_ref=git_ref,
            git_sha=git_sha,
            image_ref=image_ref,
            source_path=source_path,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            action="build.create",
            actor=actor,
            team=app.team,
            target=f"{app.name} build {build.pk}",
            remote_addr=remote_addr,
            data={"source": source, "git_sha": git_sha, "image_ref": image_ref},
        )
    # a database that was reset reuses build ids while Redis keeps old streams: never follow another build's lines
    redis_client().delete(build.stream_key)
    return build


def builds_dir() -> Path:
    """Where pushed trees wait for their build (the hook writes them, the worker reads and removes them)."""
    path = Path(settings.BERTH_HOME) / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pushed_tree_export(*, repo: Path, sha: str, prefix: str) -> Path:
    """Unpack the pushed commit `sha` into a new folder of builds_dir() for its build, while the push waits (its
    objects may still be in git's quarantine). Raises UnsafePath (naming the path as the push wrote it) or
    BuildError("cannot read the pushed commit …"), the pusher's one line either way; the folder is gone then."""
    source = builds_dir() / f"{prefix}-{uuid.uuid4().hex}"
    source.mkdir()
    try:
        tree_export(repo=repo, sha=sha, into=source)
    except UnsafePath:
        shutil.rmtree(source, ignore_errors=True)
        raise
    except BuildError:
        shutil.rmtree(source, ignore_errors=True)
        raise BuildError(f"cannot read the pushed commit {sha[:12]}") from None
    return source


def build_transition(*, build: Build, from_statuses, to_status: str, reason: str = "", **fields) -> bool:
    """Move a build only if it is still in one of `from_statuses`; False if another worker moved it first."""
    now = timezone.now()
    if to_status == BuildStatus.BUILDING:
        fields.setdefault("started_at", now)
        fields.setdefault("heartbeat_at", now)
        # a backstop for a hung worker that still beats; the builder itself enforces BERTH_BUILD_TIMEOUT
        fields.setdefault("deadline", now + timedelta(seconds=build_deadline_seconds()))
    if to_status not in ACTIVE_BUILD_STATUSES:
        fields.setdefault("finished_at", now)
    updated = Build.objects.filter(pk=build.pk, status__in=list(from_statuses)).update(
        status=to_status, status_reason=reason, **fields
    )
    if updated != 1:
        return False
    build.refresh_from_db()
    return True


def build_cancel(*, build: Build, actor, remote_addr: str | None = None) -> Build:
    if build.is_finished:
        raise ValueError(f"build {build.pk} already {build.status}")
    Build.objects.filter(pk=build.pk).update(cancel_requested=True)
    # a queued build has no worker to notice: cancel it here
    if build_transition(
        build=build, from_statuses=[BuildStatus.QUEUED], to_status=BuildStatus.CANCELLED, reason="cancelled"
    ):
        build_log_finish(build, "error: build cancelled", BuildStatus.CANCELLED)
    audit_record(
        action="build.cancel",
        actor=actor,
        team=build.app.team,
        target=f"{build.app.name} build {build.pk}",
        remote_addr=remote_addr,
        data={},
    )
    build.refresh_from_db()
    return build


def build_log_finish(build: Build, last_line: str | None, status: str) -> None:
    _remove_source(build)
    stream = log_stream(build)
    if last_line:
        stream.append(last_line)
    stream.close(status)
    Build.objects.filter(pk=build.pk).update(log="\n".join(stream.read_all()))


class BuildLog:
    """Lines go to the Redis stream, read live by the pusher and the browser; the last one is remembered so a
    failure's reason, already printed by the builder, is not printed twice."""

    def __init__(self, build: Build):
        self.build = build
        self.stream = log_stream(build)
        self.last = ""

    def __call__(self, line: str, *, more: bool = False, detail: bool = False) -> None:
        self.stream.append(line, more=more, detail=detail)
        if not detail:  # the engine's step noise (full log only) is never a failure's reason
            self.last = line

    def cancelled(self) -> bool:
        return Build.objects.filter(pk=self.build.pk, cancel_requested=True).exists()


class BuildHeartbeat:
    """Beats the build's heartbeat from a thread of the worker process while the build runs.

    A thread, not the log lines: a quiet step (a long compile, a roll-out waiting on health checks) must not look
    dead, while a killed worker process stops beating at once and the sweep fails its build after the grace.
    """

    def __init__(self, build_id: int):
        self.build_id = build_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"build-{build_id}-heartbeat", daemon=True)

    def __enter__(self) -> "BuildHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                try:
                    Build.objects.filter(pk=self.build_id, status=BuildStatus.BUILDING).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:
                    # a database blip: the next beat retries; only a dead process stops beating for good
                    logger.warning("heartbeat of build %s failed", self.build_id, exc_info=True)
                    connection.close()
        finally:
            connection.close()


def source_export(*, app: App, sha: str, into: Path) -> None:
    """Write the tree of `sha` into `into`, no .git folder: the build sees only the commit (builds.tree unpacks it:
    nothing of a crafted tree lands outside `into`)."""
    tree_export(repo=repo_path(app_name=app.name), sha=sha, into=into)


@dataclass(frozen=True)
class BuiltImage:
    """What a build made: the image to release, the process types it runs, and the release's description."""

    image: str
    procfile: dict[str, str]
    description: str
    manifest_cron: tuple[dict, ...] | None = None  # app.json's scheduled jobs (None: it declares none)
    manifest: AppManifest | None = None  # the tree's app.json, checked (formation, postdeploy, healthchecks)


def build_image(build: Build, log: BuildLog) -> BuiltImage:
    """Build (from the pushed tree) or pull (an image reference) the image of `build`, streaming to `log`.

    Raises BuildError (or ValueError) with the reason for the pusher, BuildCancelled when it was cancelled.
    """
    app = build.app
    if build.source == Build.Source.IMAGE:
        image, procfile = image_pull(build, log)
        return BuiltImage(image=image, procfile=procfile, description=f"Deploy {build.image_ref}")
    with tempfile.TemporaryDirectory(prefix=f"berth-build-{build.pk}-") as tmp:
        source_dir = Path(tmp)
        if build.source_path:
            # the pre-receive hook exported the pushed tree (its objects are still in git's quarantine)
            source_dir = Path(build.source_path)
            if not source_dir.is_dir():
                raise BuildError("the pushed source is gone (was the build retried on another machine?)")
        else:
            source_export(app=app, sha=build.git_sha, into=source_dir)
        buildpack = detect(source_dir, app.buildpack or None)
        manifest = manifest_read(
            source_dir
        )  # checked by detect already: a bad app.json failed the build there
        Build.objects.filter(pk=build.pk).update(buildpack=buildpack.name)
        procfile = read_procfile(source_dir, default_web_command=buildpack.default_web_command)
        result = docker_build(
            source_dir=source_dir,
            tag=build.image_tag,
            buildpack=buildpack,
            on_line=log,
            ca_bundle=build_ca_bundle(),
            timeout=settings.BERTH_BUILD_TIMEOUT,
            cancelled=log.cancelled,
            labels=image_labels(app=app),
            check_dockerfile=lambda dockerfile: dockerfile_images_check(build, dockerfile, log),
            config=config_for_app(app=app),
            on_detail=lambda line: log(line, detail=True),
            cache_ref=build_cache_ref(app_name=app.name),
            run_ref=build_run_ref(app_name=app.name),
        )
    return BuiltImage(
        image=result.tag,
        procfile=procfile,
        description=f"Deploy {build.git_sha[:7]}",
        manifest_cron=manifest.cron if manifest is not None else None,
        manifest=manifest,
    )


def build_cache_clear(*, app: App, actor, remote_addr: str | None = None) -> bool:
    """Drop the app's dependency cache (its last build's dependency stage) and run cache: the next build downloads
    everything again. True when there was one."""
    cleared = image_untag(build_cache_ref(app_name=app.name))
    cleared = image_untag(build_run_ref(app_name=app.name)) or cleared
    audit_record(
        action="build.cache.clear",
        actor=actor,
        team=app.team,
        target=app.name,
        remote_addr=remote_addr,
        data={"cleared": cleared},
    )
    return cleared


def _remove_source(build: Build) -> None:
    if build.source_path:
        shutil.rmtree(build.source_path, ignore_errors=True)


def build_fail(build: Build, reason: str, *, already_logged: str = "") -> Build:
    line = reason if reason.startswith("error:") else f"error: {reason}"
    if build_transition(
        build=build, from_statuses=ACTIVE_BUILD_STATUSES, to_status=BuildStatus.FAILED, reason=reason
    ):
        # the builder prints its own failure as its last line; the log says it once
        build_log_finish(build, None if already_logged == line else line, BuildStatus.FAILED)
        # robust: a listener's error (a notification) is not the build's
        build_failed.send_robust(sender=Build, build=build, reason=reason)
    return build


def build_ca_bundle() -> Path | None:
    """The CA bundle builds trust: BERTH_BUILD_CA_BUNDLE, by default the host's, so a proxy's CA the host trusts
    reaches pip and npm inside the build. "none" turns it off. A bundle configured elsewhere that is missing is
    passed on, so the build fails at once saying so, not later in pip with CERTIFICATE_VERIFY_FAILED; only the
    default is skipped when absent (a host without Debian's bundle)."""
    value = str(getattr(settings, "BERTH_BUILD_CA_BUNDLE", "") or DEFAULT_CA_BUNDLE).strip()
    if value.lower() in ("none", "off"):
        return None
    path = Path(value)
    if value == DEFAULT_CA_BUNDLE and not path.is_file():
        return None
    return path


def dockerfile_images_check(build: Build, dockerfile: str, log: BuildLog) -> None:
    """A build uses only images its team may (builds.images). A base image not on this machine is pulled first,
    in the build's log, so that what the engine builds FROM, and that image's ONBUILD triggers, are checked."""

    def pull(ref: str) -> None:
        log(f"-----> Pulling {ref}")
        try:
            _pull_stream(ref, log)
        except PullError as exc:
            raise BuildError(str(exc)) from exc

    try:
        dockerfile_check(dockerfile=dockerfile, team=build.app.team, pull=pull)
    except ImageRefused as exc:
        raise BuildError(str(exc)) from exc


def _pull_stream(ref: str, log, cancelled=None) -> None:
    """Pull `ref` with the engine, each layer's steps logged once; PullError with the engine's reason."""
    try:
        engine_image_pull(ref, on_progress=lambda progress: log(f"       {progress}"), cancelled=cancelled)
    except PullCancelled as exc:
        raise BuildCancelled("cancelled") from exc


def image_pull(build: Build, log) -> tuple[str, dict]:
    """Pull an image reference, streaming progress; the release runs it by digest so every node runs the same bytes.

    Only an image the team may use (builds.images): checked before the pull, and again on the image the pull (or,
    when it fails, the copy on this machine) gives, which is then deployed by its id, not looked up again."""
    team = build.app.team
    image_reference_check(ref=build.image_ref, team=team)
    repository, _ = repository_and_tag(build.image_ref)
    if not image_reference_pullable(build.image_ref):
        log(f"-----> Using {build.image_ref} on this machine")  # an id, or Berth's own berth/…: never pulled
    else:
        log(f"-----> Pulling {build.image_ref}")
        try:
            _pull_stream(build.image_ref, log, cancelled=log.cancelled)
        except PullError as exc:
            reason = str(exc)
            # Air-gapped (or a registry down): an image already on this machine is deployed as it is, as Dokku
            # does; never another team's (the check below)
            if image_reference_check(ref=build.image_ref, team=team) is None:
                raise ValueError(reason) from exc
            log(f"       {reason}")
            log(f"-----> Using the copy of {build.image_ref} on this machine")
    found = image_reference_check(ref=build.image_ref, team=team)
    if found is None:
        raise ValueError(f"no image {build.image_ref} on this machine after its pull")
    # the check's inspection is the image itself (the engine inspects the same image by any of its names)
    digests = found.get("RepoDigests") or []
    ref = next(
        (d for d in digests if d.startswith(repository.split("@")[0] + "@")),
        digests[0] if digests else found["Id"],
    )
    log(f"       digest {ref}")
    return ref, {}


@register_sweeper
def builds_sweep() -> int:
    """Fail builds whose worker died (no heartbeat), that ran past their deadline, or that were never picked up."""
    now = timezone.now()
    grace = heartbeat_grace()
    stuck = list(
        Build.objects.filter(status=BuildStatus.BUILDING, heartbeat_at__lt=now - grace)
        | Build.objects.filter(status=BuildStatus.BUILDING, deadline__lt=now)
        | Build.objects.filter(status=BuildStatus.QUEUED, created_at__lt=now - QUEUED_GRACE)
    )
    fixed = 0
    for build in stuck:
        if build.deadline and build.deadline < now:
            reason = (
                f"error: the build ran past its deadline ({build_deadline_seconds()} s for building and "
                "rolling out); the build was failed by the sweep"
            )
        elif build.status == BuildStatus.QUEUED:
            reason = "error: no build worker picked this build up; is the worker running?"
        else:
            silent = (
                (now - build.heartbeat_at).total_seconds() if build.heartbeat_at else grace.total_seconds()
            )
            reason = (
                f"error: the build worker {build.worker or '?'} stopped (killed or lost): no heartbeat for {silent:.0f}s "
                f"(grace {grace.total_seconds():.0f}s); the build was failed by the sweep"
            )
        if build_transition(
            build=build, from_statuses=[build.status], to_status=BuildStatus.FAILED, reason=reason
        ):
            build_log_finish(build, reason, BuildStatus.FAILED)
            fixed += 1
    return fixed


def follow_timeout() -> float:
    """How long a follower waits for a build's next line: past the build and deploy deadlines it cannot be alive."""
    return float(settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 60)


def build_enqueue(build: Build) -> None:
    """Hand the build to whoever runs builds once the transaction commits (berth.deploys.pipeline, through its
    receiver of `build_queued`: the pipeline above builds takes it from the image to a live release)."""
    transaction.on_commit(lambda: build_queued.send(sender=Build, build=build))


def image_reference_check_at_once(*, ref: str, team) -> None:
    """The check of builds.images where a request is answered: the engine unreachable from here is no refusal
    (the worker checks again where it pulls), another team's image is."""
    try:
        image_reference_check(ref=ref, team=team)
    except ImageRefused:
        raise
    except ENGINE_ERRORS:
        logger.warning(
            "the engine did not answer the image check of %s; the worker checks it", ref, exc_info=True
        )


def image_deploy(*, app: App, image_ref: str, actor, remote_addr: str | None = None) -> Build:
    """Deploy an image reference: pull it (progress in the build's stream), record its digest, make a release.

    An image the team may not use is refused here (ImageRefused, a ValueError) before anything is queued."""
    image_reference_check_at_once(ref=validate_image_ref(image_ref), team=app.team)
    with transaction.atomic():
        build = build_create(
            app=app, source=Build.Source.IMAGE, image_ref=image_ref, actor=actor, remote_addr=remote_addr
        )
        build_enqueue(build)
    return build
