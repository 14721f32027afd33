"""Repositories and the pre-receive decision, against real git repositories (no server)."""

import fcntl
import os
import stat
import subprocess
import threading
import time

import pytest
from berth.builds.repos import PUSH_LOCK_NAME, is_valid_app_name, ref_value, repo_delete
from berth.gitserver import seams
from berth.gitserver.pktline import read_commands, refusal
from berth.gitserver.services import RefUpdate, push_receive, repo_ensure

from tests.conftest import wait_for


@pytest.fixture
def home(settings, tmp_path):
    settings.BERTH_HOME = tmp_path / "home"
    settings.BERTH_HOME.mkdir()
    return settings.BERTH_HOME


def git_config(repo, key):
    return subprocess.run(
        ["git", "--git-dir", str(repo), "config", "--get", key], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_into(repo, tmp_path, message="one") -> str:
    """A commit written straight into the bare repository (no hook involved), on refs/heads/main."""
    env = {**os.environ, "GIT_DIR": str(repo), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}  # fmt: skip
    tree = subprocess.run(["git", "mktree"], input="", env=env, capture_output=True, text=True, check=True)
    sha = subprocess.run(
        ["git", "commit-tree", tree.stdout.strip(), "-m", message],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/main", sha], env=env, check=True)
    return sha


def test_repo_ensure_creates_a_bare_repository_with_config_and_hook(home):
    repo = repo_ensure(app_name="demo", deploy_branch="main")
    assert repo == home / "repos" / "demo.git"
    assert git_config(repo, "core.bare") == "true"
    assert git_config(repo, "http.receivepack") == "true"
    assert git_config(repo, "receive.denyDeletes") == "false"
    assert git_config(repo, "receive.denyNonFastForwards") == "false"
    assert int(git_config(repo, "receive.maxInputSize")) > 0
    assert (repo / "HEAD").read_text().strip() == "ref: refs/heads/main"
    hook = repo / "hooks" / "pre-receive"
    assert hook.stat().st_mode & stat.S_IXUSR
    # the relay to the web process, not a Django process per push
    assert hook.read_text().startswith("#!/bin/bash\n")
    assert "BERTH_GIT_HOOK_FD" in hook.read_text()
    assert "manage.py" not in hook.read_text()
    assert not list((repo / "hooks").glob("*.sample"))


def test_repo_ensure_is_idempotent_and_follows_the_deploy_branch(home):
    first = repo_ensure(app_name="demo")
    hook_mtime = (first / "hooks" / "pre-receive").stat().st_mtime_ns
    assert repo_ensure(app_name="demo") == first
    assert (first / "hooks" / "pre-receive").stat().st_mtime_ns == hook_mtime
    repo_ensure(app_name="demo", deploy_branch="production")
    assert (first / "HEAD").read_text().strip() == "ref: refs/heads/production"


def test_repo_ensure_rewrites_a_tampered_hook_when_the_stamp_changes(home):
    repo = repo_ensure(app_name="demo")
    (repo / "berth-stamp").write_text("old")
    (repo / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 0\n")
    repo_ensure(app_name="demo")
    assert "BERTH_GIT_HOOK_FD" in (repo / "hooks" / "pre-receive").read_text()


def test_concurrent_first_access_creates_one_repository(home):
    errors = []

    def ensure():
        try:
            repo_ensure(app_name="racer")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert git_config(home / "repos" / "racer.git", "http.receivepack") == "true"


@pytest.mark.parametrize(
    "name", ["", "a", "A-app", "-app", "1app", "app.git", "../etc", "a/b", "x" * 31, "app\n"]
)
def test_invalid_app_names_never_become_paths(home, name):
    assert not is_valid_app_name(name)
    with pytest.raises(ValueError):
        repo_ensure(app_name=name)
    with pytest.raises(ValueError):
        repo_delete(app_name=name)


def test_invalid_deploy_branch_is_refused(home):
    with pytest.raises(ValueError):
        repo_ensure(app_name="demo", deploy_branch="../x")


def test_repo_delete_removes_the_repository(home):
    repo = repo_ensure(app_name="demo")
    assert repo_delete(app_name="demo") is True
    assert not repo.exists()
    assert repo_delete(app_name="demo") is False
    assert [p.name for p in (home / "repos").iterdir()] == []


class RecordingHandler:
    def __init__(self, accept=True):
        self.accept = accept
        self.calls = []

    def on_push(self, *, app_name, ref, old, new, repo_path, write_line, pusher):
        self.calls.append(ref)
        write_line(f"handled {ref}")
        return self.accept


@pytest.fixture
def handler():
    previous = seams.get_push_handler()
    recording = RecordingHandler()
    seams.set_push_handler(recording)
    yield recording
    seams.set_push_handler(previous)


def decide(repo, updates, wait_seconds=5):
    lines = []
    accepted = push_receive(
        app_name="demo",
        deploy_branch="main",
        repo=repo,
        updates=updates,
        write_line=lines.append,
        wait_seconds=wait_seconds,
    )
    return accepted, lines


def move_refs(repo, sha, *refs):
    """Do what receive-pack does after an accepted pre-receive, so the lock holder lets go at once."""
    for ref in refs:
        subprocess.run(["git", "--git-dir", str(repo), "update-ref", ref, sha], check=True)


def test_the_handler_is_called_only_for_the_deploy_branch(home, handler, tmp_path):
    repo = repo_ensure(app_name="demo")
    zero, new = "0" * 40, commit_into(repo, tmp_path)
    accepted, lines = decide(
        repo, [RefUpdate(zero, new, "refs/heads/feature"), RefUpdate(zero, new, "refs/tags/v1")]
    )
    assert accepted
    assert handler.calls == []
    assert lines == ["feature: not deployed: only main deploys"]
    move_refs(repo, new, "refs/heads/feature", "refs/tags/v1")
    other = repo_ensure(app_name="demo-two")
    new = commit_into(other, tmp_path)
    subprocess.run(["git", "--git-dir", str(other), "update-ref", "-d", "refs/heads/main"], check=True)
    accepted, lines = decide(other, [RefUpdate(zero, new, "refs/heads/main")])
    assert accepted
    assert handler.calls == ["refs/heads/main"]
    move_refs(other, new, "refs/heads/main")


def test_a_refusing_handler_refuses_the_whole_push(home, handler):
    handler.accept = False
    repo = repo_ensure(app_name="demo")
    zero, new = "0" * 40, "a" * 40
    accepted, _ = decide(repo, [RefUpdate(zero, new, "refs/heads/main")])
    assert not accepted


def test_deleting_the_deploy_branch_is_refused_without_calling_the_handler(home, handler, tmp_path):
    repo = repo_ensure(app_name="demo")
    sha = commit_into(repo, tmp_path)
    accepted, lines = decide(repo, [RefUpdate(sha, "0" * 40, "refs/heads/main")])
    assert not accepted
    assert lines == ["error: deleting the deploy branch is not allowed"]
    assert handler.calls == []


def test_a_ref_that_moved_since_the_push_began_is_refused(home, handler, tmp_path):
    repo = repo_ensure(app_name="demo")
    sha = commit_into(repo, tmp_path)
    stale = "b" * 40
    accepted, lines = decide(repo, [RefUpdate(stale, "c" * 40, "refs/heads/main")])
    assert not accepted
    assert "changed while this push waited" in lines[0]
    assert ref_value(repo=repo, ref="refs/heads/main") == sha


def test_a_push_waits_visibly_for_the_lock_and_gives_up_after_its_bound(home, handler):
    repo = repo_ensure(app_name="demo")
    holder = os.open(repo / PUSH_LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        accepted, lines = decide(repo, [RefUpdate("0" * 40, "a" * 40, "refs/heads/main")], wait_seconds=1)
        waited = time.monotonic() - started
    finally:
        os.close(holder)
    assert not accepted
    assert lines[0] == "waiting for the previous push of demo to finish…"
    assert lines[1].startswith("error: gave up after 1s waiting for the previous push of demo")
    assert 0.9 < waited < 5
    assert handler.calls == []


def test_pkt_line_refusal_round_trips_the_commands():
    command = b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/main\0report-status side-band-64k agent=git/2\n"
    head = f"{len(command) + 4:04x}".encode() + command + b"0000PACK..."
    refs, capabilities = read_commands(head)
    assert refs == ["refs/heads/main"]
    assert {"report-status", "side-band-64k"} <= capabilities
    body = refusal(refs=refs, capabilities=capabilities, message="too big", reason="push too large")
    assert b"\x02error: too big\n" in body
    assert b"ng refs/heads/main push too large\n" in body
    assert body.endswith(b"0000")
    assert read_commands(b"zzzz") is None
    assert refusal(refs=refs, capabilities=set(), message="x", reason="y") is None


def test_an_accepted_push_keeps_the_lock_until_receive_pack_moved_the_ref(home, handler, tmp_path):
    repo = repo_ensure(app_name="demo")
    sha = commit_into(repo, tmp_path)
    accepted, _ = decide(repo, [RefUpdate("0" * 40, sha, "refs/heads/next")])
    assert accepted

    def lock_is_free():
        fd = os.open(repo / PUSH_LOCK_NAME, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    time.sleep(0.3)
    assert not lock_is_free()  # the hook has exited; the ref has not moved yet
    subprocess.run(["git", "--git-dir", str(repo), "update-ref", "refs/heads/next", sha], check=True)
    wait_for(lock_is_free, timeout=5, message="the push lock to be released")
