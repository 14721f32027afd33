"""Test doubles of the two git seams, installed in the pytest process and (via apps.py) in servers and hooks.

The push handler's behaviour is chosen by the pushed commit's message, so one installed handler serves every
test, in whatever process the hook runs: `berth-test: slow` writes five lines 0.5 s apart, `berth-test: refuse`
refuses, `berth-test: hold <seconds>` keeps the push busy.
"""

import subprocess
import time
from pathlib import Path

from berth.builds.repos import repo_path
from berth.gitserver.seams import GitDenied, GitTarget

WRITE_TOKEN = "rw-token"
READ_TOKEN = "ro-token"


class FakeAccess:
    """Apps named other-* belong to another team, missing-* do not exist; every other app is ours."""

    def authorize(self, *, app_name: str, token: str, write: bool) -> GitTarget:
        if token not in (WRITE_TOKEN, READ_TOKEN):
            raise GitDenied(401, "invalid token")
        if app_name.startswith(("other-", "missing-")):
            raise GitDenied(404, f"no app named {app_name}")
        if write and token == READ_TOKEN:
            raise GitDenied(403, f"your role on {app_name} may not push")
        user = "alice" if token == WRITE_TOKEN else "bob"
        return GitTarget(
            app_name=app_name, repo_path=repo_path(app_name=app_name), deploy_branch="main", user_label=user
        )


class ScriptedPushHandler:
    def on_push(self, *, app_name, ref, old, new, repo_path: Path, write_line, pusher: str) -> bool:
        message = subprocess.run(
            ["git", "--git-dir", str(repo_path), "log", "-1", "--format=%B", new],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "berth-test: slow" in message:
            for number in range(1, 6):
                write_line(f"build step {number} at {time.time():.3f}")
                if number < 5:
                    time.sleep(0.5)
        if "berth-test: hold" in message:
            seconds = float(message.split("berth-test: hold", 1)[1].split()[0])
            write_line(f"holding {app_name} for {seconds:g}s")
            time.sleep(seconds)
        if "berth-test: refuse" in message:
            write_line("error: the build failed (as this test asked)")
            return False
        # the pusher is the GitTarget's user_label, passed by the view to the relay that decides the push
        write_line(f"deployed {app_name} {new[:7]} for {pusher}")
        return True


def install() -> None:
    from berth.gitserver.seams import set_git_access, set_push_handler

    set_git_access(FakeAccess())
    set_push_handler(ScriptedPushHandler())
