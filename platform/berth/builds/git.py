"""What a git push does: the push handler the git server (berth.gitserver) calls from its pre-receive hook.

A push of the deploy branch becomes a Build run by a Celery worker; the hook follows the build's Redis stream, so
the pusher sees each line live as `remote:` output, and the ref is accepted only if the build and roll-out succeed.
When the pusher left mid-build, the worker moves the ref itself (ref_move_if_pusher_left).
"""

import fcntl
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from django.contrib.auth import get_user_model

from berth.apps.models import App
from berth.builds import services
from berth.builds.errors import BuildError
from berth.builds.models import Build, BuildStatus
from berth.builds.repos import PUSH_LOCK_NAME, pushed_objects_link, repo_path

logger = logging.getLogger(__name__)

# how long the push waits on a quiet build stream before it looks at the build's row
FOLLOW_CHECK_SECONDS = 5.0
# A build no worker has taken after these many seconds (each counted from the push) is handed to the workers
# again: a task message lost on its way leaves nothing else to wake it, and the push would wait until the sweep
# fails the build (builds.services.QUEUED_GRACE, 10 minutes). Taking a build is idempotent (only a queued one
# moves to building), so a message that was merely slow costs one no-op task.
REQUEUE_AFTER_SECONDS = (20.0, 60.0, 180.0)


def _keep_pushed_objects(repo: Path) -> None:
    """Link the pushed objects from git's quarantine into the repository's own object store.

    receive-pack drops its quarantine when the pusher goes away mid-build, while the build goes on; with the
    objects kept, the worker can still move the ref when that build succeeds (berth.deploys.pipeline.build_run,
    through ref_move_if_pusher_left), so the repository keeps matching what runs. Objects no ref reaches (a
    refused push) are harmless; gc prunes them. Packs are linked before their indexes: a reader that finds an
    index must find its pack.
    """
    quarantine = os.environ.get("GIT_QUARANTINE_PATH")
    if not quarantine or not Path(quarantine).is_dir():
        return
    source, target = Path(quarantine), repo / "objects"
    pushed_objects_link(source=source, target=target)


class BuildOnPush:
    """Runs a build of the pushed commit and accepts the ref only if it ends live."""

    def on_push(
        self,
        *,
        app_name: str,
        ref: str,
        old: str,
        new: str,
        repo_path: Path,
        write_line: Callable[[str], None],
        pusher: str = "",
    ) -> bool:
        app = App.objects.select_related("team").filter(name=app_name).first()
        if app is None:
            write_line(f"error: no app named {app_name}")
            return False
        # the git server names the pusher; a hook run in its own process has it from git's environment
        actor = get_user_model().objects.filter(username=pusher or os.environ.get("REMOTE_USER", "")).first()
        # the pushed objects may still be in git's quarantine (a hook in its own process sees them there; the git
        # server's relay linked them into the repository first): export the tree now, while the push waits
        try:
            source = services.pushed_tree_export(repo=repo_path, sha=new, prefix="push")
        except BuildError as exc:
            write_line(f"error: {exc}")
            return False
        _keep_pushed_objects(repo_path)
        try:
            build = services.build_create(
                app=app,
                source=Build.Source.GIT,
                actor=actor,
                git_ref=ref,
                git_sha=new,
                source_path=str(source),
            )
        except services.BuildConflict as exc:
            shutil.rmtree(source, ignore_errors=True)
            write_line(f"error: {exc}")
            return False
        services.build_enqueue(build)
        write_line(f"-----> Build {build.pk} of {app_name} ({new[:7]}) queued")
        self._follow(build, write_line)
        build.refresh_from_db()
        if build.status != BuildStatus.SUCCEEDED:
            write_line(
                f"error: build {build.pk} {build.status}; the push was not accepted and nothing changed"
            )
            return False
        return True

    @staticmethod
    def _follow(build: Build, write_line: Callable[[str], None]) -> None:
        """Relay the build's lines until its end line; a lost Redis connection resumes after the last line seen,
        never a traceback. While no line comes the build's row is checked too: a build that ended without its
        end line reaching the stream (Redis lost it) still ends the push, with its reason."""
        last_id, failures = "0", 0
        idle_since = started = time.monotonic()
        requeues = list(REQUEUE_AFTER_SECONDS)
        while True:
            try:
                stream = services.log_stream(build)
                for entry_id, line in stream.follow(last_id=last_id, timeout=FOLLOW_CHECK_SECONDS):
                    write_line(line)
                    last_id, failures, idle_since = entry_id, 0, time.monotonic()
                if stream.status() is not None:
                    return
            except redis.exceptions.ConnectionError:
                failures += 1
                if failures > 60:
                    write_line("error: lost the build's log stream (is Redis running?); see `berth builds`")
                    return
                if failures == 1:
                    write_line("       (the build log stream is reconnecting…)")
                time.sleep(1)
                continue
            build.refresh_from_db(fields=["status", "status_reason"])
            if build.is_finished:
                if build.status_reason:
                    write_line(build.status_reason)
                return
            if build.status == BuildStatus.QUEUED and requeues and time.monotonic() - started >= requeues[0]:
                requeues.pop(0)
                logger.warning(
                    "build %s of %s still queued: handed to the workers again", build.pk, build.app.name
                )
                services.build_enqueue(build)
            if time.monotonic() - idle_since >= services.follow_timeout():
                return


def ref_move_if_pusher_left(build: Build, log: Callable[[str], None]) -> None:
    """Move the pushed ref to the deployed commit when the push that asked for it is gone.

    The pre-receive hook holds the repository's push lock from before it queued the build until git has moved the
    ref. Taking that lock here therefore means the hook is gone (the pusher disconnected): git will not move the
    ref, so the worker does, and the repository still matches what runs. The hook kept the pushed objects
    (git._keep_pushed_objects); when they are missing the ref is left alone and the log says so.
    """
    repo = repo_path(app_name=build.app.name)
    if not build.git_ref or not build.git_sha or not repo.is_dir():
        return
    fd = os.open(repo / PUSH_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # the hook is still there: git moves the ref once the hook answers
        git = ["git", "--git-dir", str(repo)]
        if subprocess.run(
            [*git, "cat-file", "-e", f"{build.git_sha}^{{commit}}"], capture_output=True
        ).returncode:
            log(f"       the pusher left and {build.git_sha[:7]} was not kept; push again to record it")
            return
        moved = subprocess.run(
            [*git, "update-ref", "-m", f"berth: build {build.pk} deployed", build.git_ref, build.git_sha],
            capture_output=True,
            text=True,
        )
        if moved.returncode == 0:
            log(f"-----> The pusher left; {build.git_ref} moved to {build.git_sha[:7]} here")
        else:
            log(f"       could not move {build.git_ref}: {moved.stderr.strip()[:200]}")
    finally:
        os.close(fd)
