"""The project's side of the git server's two seams: who may fetch or push an app, and what a push does.

A push of the deploy branch becomes a Build run by a Celery worker; the hook follows the build's Redis stream, so
the pusher sees each line live as `remote:` output, and the ref is accepted only if the build and roll-out succeed.
"""

import fcntl
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from django.contrib.auth import get_user_model

from berth.accounts.roles import MEMBER, VIEWER, role_at_least
from berth.accounts.selectors import token_expired_at, user_role
from berth.accounts.services import token_authenticate
from berth.apps.models import App
from berth.builds import services
from berth.builds.errors import BuildError
from berth.builds.models import Build, BuildStatus
from berth.builds.tree import UnsafePath, tree_export
from berth.gitserver.seams import GitDenied, GitTarget
from berth.gitserver.services import repo_ensure

# how long the push waits on a quiet build stream before it looks at the build's row
FOLLOW_CHECK_SECONDS = 5.0


def _keep_pushed_objects(repo_path: Path) -> None:
    """Link the pushed objects from git's quarantine into the repository's own object store.

    receive-pack drops its quarantine when the pusher goes away mid-build, while the build goes on; with the
    objects kept, the worker can still move the ref when that build succeeds (berth.deploys.pipeline.build_run, through ref_move_if_pusher_left), so the
    repository keeps matching what runs. Objects no ref reaches (a refused push) are harmless; gc prunes them.
    Packs are linked before their indexes: a reader that finds an index must find its pack.
    """
    quarantine = os.environ.get("GIT_QUARANTINE_PATH")
    if not quarantine or not Path(quarantine).is_dir():
        return
    source, target = Path(quarantine), repo_path / "objects"
    files = [path for path in source.rglob("*") if path.is_file() and not path.name.startswith("tmp_")]
    for path in sorted(files, key=lambda p: p.suffix == ".idx"):
        destination = target / path.relative_to(source)
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(path, destination)


class TokenGitAccess:
    """HTTP Basic with any username and an API token as the password; roles as in the API."""

    def authorize(self, *, app_name: str, token: str, write: bool) -> GitTarget:
        api_token = token_authenticate(clear=token) if token else None
        if api_token is None:
            expired = token_expired_at(clear=token) if token else None
            if expired is not None:
                raise GitDenied(
                    401,
                    f"authentication failed: your token expired on {expired:%Y-%m-%d %H:%M} UTC; create a new one",
                )
            raise GitDenied(
                401, "authentication failed: use an API token (berth tokens:create) as the password"
            )
        user = api_token.user
        app = App.objects.select_related("team").filter(name=app_name).first()
        role = user_role(user=user, team=app.team) if app else None
        if app is None or role is None:
            raise GitDenied(404, f"no app named {app_name}")
        needed = MEMBER if write else VIEWER
        if not role_at_least(role, needed):
            raise GitDenied(403, f"pushing to {app_name} needs the {needed} role; you are {role}")
        return GitTarget(
            app_name=app.name,
            repo_path=repo_ensure(app_name=app.name, deploy_branch=app.deploy_branch),
            deploy_branch=app.deploy_branch,
            user_label=user.get_username(),
        )


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
    ) -> bool:
        app = App.objects.select_related("team").filter(name=app_name).first()
        if app is None:
            write_line(f"error: no app named {app_name}")
            return False
        actor = get_user_model().objects.filter(username=os.environ.get("REMOTE_USER", "")).first()
        source = services.builds_dir() / f"push-{uuid.uuid4().hex}"
        source.mkdir()
        # the pushed objects are still in git's quarantine, visible to this process only: export the tree here
        try:
            tree_export(repo=repo_path, sha=new, into=source)
        except UnsafePath as exc:
            shutil.rmtree(source, ignore_errors=True)
            write_line(f"error: {exc}")
            return False
        except BuildError:
            shutil.rmtree(source, ignore_errors=True)
            write_line(f"error: cannot read the pushed commit {new[:12]}")
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
        import time

        import redis

        last_id, failures = "0", 0
        idle_since = time.monotonic()
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
            if time.monotonic() - idle_since >= services.follow_timeout():
                return


def ref_move_if_pusher_left(build: Build, log: Callable[[str], None]) -> None:
    """Move the pushed ref to the deployed commit when the push that asked for it is gone.

    The pre-receive hook holds the repository's push lock from before it queued the build until git has moved the
    ref. Taking that lock here therefore means the hook is gone (the pusher disconnected): git will not move the
    ref, so the worker does, and the repository still matches what runs. The hook kept the pushed objects
    (git._keep_pushed_objects); when they are missing the ref is left alone and the log says so.
    """
    from berth.gitserver.selectors import repo_path as git_repo_path
    from berth.gitserver.services import PUSH_LOCK_NAME

    repo = git_repo_path(app_name=build.app.name)
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
