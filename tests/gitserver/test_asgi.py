"""git over smart HTTP against the real web process: gunicorn with the uvicorn worker, as `make up` runs it."""

import fcntl
import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.gitserver.conftest import ASGI_MAX_PUSH_BYTES, remote_ref, remote_url, worker_pids
from tests.gitserver.fakes import READ_TOKEN, WRITE_TOKEN


@pytest.fixture
def work(git, tmp_path) -> Path:
    """A fresh local repository with one commit on main."""
    path = tmp_path / "work"
    git("init", "-q", "-b", "main", str(path))
    git.commit(path, "first")
    return path


def add_remote(git, work: Path, server, app: str, token: str = WRITE_TOKEN) -> None:
    git("remote", "add", "origin", remote_url(server.url, app, token), cwd=work)


def test_clone_of_an_empty_repository_then_push_fetch_and_clone_again(asgi_server, git, tmp_path):
    url = remote_url(asgi_server.url, "asgi-basic")
    first = tmp_path / "first"
    cloned = git("clone", url, str(first))
    assert "You appear to have cloned an empty repository" in cloned.stderr
    assert (asgi_server.home / "repos" / "asgi-basic.git" / "hooks" / "pre-receive").exists()

    sha = git.commit(first, "first")
    pushed = git("push", "origin", "HEAD:main", cwd=first)
    assert f"remote: deployed asgi-basic {sha[:7]} for alice" in pushed.stderr
    assert remote_ref(git, asgi_server.url, "asgi-basic") == sha

    second = tmp_path / "second"
    git("clone", url, str(second))
    assert git("rev-parse", "HEAD", cwd=second).stdout.strip() == sha

    newer = git.commit(first, "newer")
    git("push", "origin", "HEAD:main", cwd=first)
    git("fetch", "origin", cwd=second)
    assert git("rev-parse", "origin/main", cwd=second).stdout.strip() == newer


def test_git_protocol_v2_is_passed_through(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-v2")
    git("push", "origin", "HEAD:main", cwd=work)
    env_trace = {**git.env, "GIT_TRACE_PACKET": "1"}
    result = subprocess.run(
        ["git", "-c", "protocol.version=2", "ls-remote", "origin"],
        cwd=work,
        env=env_trace,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "version 2" in result.stderr
    assert "refs/heads/main" in result.stdout


def test_a_wrong_token_gets_401_and_git_says_authentication_failed(asgi_server, git, tmp_path):
    result = git("clone", remote_url(asgi_server.url, "asgi-auth", "wrong"), str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    response = httpx.get(
        f"{asgi_server.url}/git/asgi-auth.git/info/refs?service=git-upload-pack", auth=("me", "wrong")
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Berth"'


def test_no_credentials_get_401_with_the_basic_realm(asgi_server):
    response = httpx.get(f"{asgi_server.url}/git/asgi-auth.git/info/refs?service=git-upload-pack")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Berth"'


@pytest.mark.parametrize("app", ["missing-app", "other-team-app"])
def test_unknown_and_other_teams_apps_are_404(asgi_server, git, tmp_path, app):
    result = git("clone", remote_url(asgi_server.url, app), str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "not found" in result.stderr
    assert not (asgi_server.home / "repos" / f"{app}.git").exists()


def test_a_read_only_token_can_clone_but_not_push(asgi_server, git, work, tmp_path):
    add_remote(git, work, asgi_server, "asgi-ro")
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    reader = tmp_path / "reader"
    git("clone", remote_url(asgi_server.url, "asgi-ro", READ_TOKEN), str(reader))
    git.commit(reader, "from a viewer")
    result = git("push", "origin", "HEAD:main", cwd=reader, check=False)
    assert result.returncode != 0
    assert "403" in result.stderr
    assert remote_ref(git, asgi_server.url, "asgi-ro") == sha


def test_hook_output_reaches_the_pusher_live(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-live")
    git.commit(work, "slow build\n\nberth-test: slow")
    result = git.timed("push", "--progress", "origin", "HEAD:main", cwd=work)
    assert result.returncode == 0, result.stderr
    steps = [(seen, line) for seen, line in result.lines if line.startswith("remote: build step")]
    assert [line.split(" at ")[0] for _, line in steps] == [f"remote: build step {n}" for n in range(1, 6)]
    first_seen = steps[0][0]
    last_written = float(steps[-1][1].rsplit(" at ", 1)[1])
    # Written 0.5 s apart: the first line must be on the pusher's screen while the build still runs.
    assert first_seen < last_written - 1.5, (first_seen, last_written)
    for seen, line in steps:
        written = float(line.rsplit(" at ", 1)[1])
        assert seen - written < 1.0, f"{line} seen {seen - written:.2f}s after it was written"


def test_a_refused_push_leaves_the_ref_unchanged(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-refuse")
    before = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    git.commit(work, "bad\n\nberth-test: refuse")
    result = git("push", "origin", "HEAD:main", cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: error: the build failed (as this test asked)" in result.stderr
    assert "pre-receive hook declined" in result.stderr
    assert remote_ref(git, asgi_server.url, "asgi-refuse") == before


def test_deleting_the_deploy_branch_is_refused(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-delete")
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", "HEAD:feature", cwd=work)
    result = git("push", "origin", ":main", cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: error: deleting the deploy branch is not allowed" in result.stderr
    assert remote_ref(git, asgi_server.url, "asgi-delete") == sha
    # Other branches may go.
    git("push", "origin", ":feature", cwd=work)
    assert remote_ref(git, asgi_server.url, "asgi-delete", "refs/heads/feature") is None


def test_another_branch_is_accepted_and_not_deployed(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-branch")
    git.commit(work, "would refuse if deployed\n\nberth-test: refuse")
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    result = git("push", "origin", "HEAD:feature", cwd=work)
    assert "remote: feature: not deployed: only main deploys" in result.stderr
    assert "deployed asgi-branch" not in result.stderr
    assert remote_ref(git, asgi_server.url, "asgi-branch", "refs/heads/feature") == sha


def test_a_push_over_the_size_limit_is_refused_clearly(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-limit")
    before = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    # Over http.postBuffer, so git sends it chunked: no Content-Length to judge it by up front.
    git.commit(work, "too big", {"big.bin": os.urandom(ASGI_MAX_PUSH_BYTES + 2 * 2**20)})
    result = git("push", "origin", "HEAD:main", cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: error: push too large: it is over this Berth's limit of 24.0 MiB" in result.stderr
    assert "BERTH_GIT_MAX_PUSH_BYTES" in result.stderr
    assert "-> main (push too large)" in result.stderr
    assert remote_ref(git, asgi_server.url, "asgi-limit") == before


def test_a_push_over_the_size_limit_gets_413_outside_git(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-limit-raw")
    base = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    big = git.commit(work, "too big", {"big.bin": os.urandom(ASGI_MAX_PUSH_BYTES + 2**20)})
    pack = subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs", "-q"],
        cwd=work,
        env=git.env,
        input=f"{big}\n^{base}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout
    command = f"{base} {big} refs/heads/main\0report-status\n".encode()
    body = f"{len(command) + 4:04x}".encode() + command + b"0000" + pack

    def chunks():  # no Content-Length: only counting the body can tell
        for start in range(0, len(body), 2**20):
            yield body[start : start + 2**20]

    response = httpx.post(
        f"{asgi_server.url}/git/asgi-limit-raw.git/git-receive-pack",
        content=chunks(),
        auth=("me", WRITE_TOKEN),
        headers={"Content-Type": "application/x-git-receive-pack-request"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "push too large: it is over this Berth's limit of 24.0 MiB" in response.text
    assert "BERTH_GIT_MAX_PUSH_BYTES" in response.text
    assert remote_ref(git, asgi_server.url, "asgi-limit-raw") == base


def test_a_garbage_body_gets_400_and_the_repository_stays_intact(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-garbage")
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    url = f"{asgi_server.url}/git/asgi-garbage.git/git-receive-pack"
    headers = {"Content-Type": "application/x-git-receive-pack-request"}
    garbage = httpx.post(
        url, content=b"\xff\xfe" + os.urandom(100_000), auth=("me", WRITE_TOKEN), headers=headers
    )
    assert garbage.status_code == 400
    assert "not a git receive-pack request" in garbage.text
    # Well-framed commands followed by a corrupt pack: git itself refuses it, nothing moves.
    zero, fake = "0" * 40, "1" * 40
    command = f"{sha} {fake} refs/heads/main\0report-status\n".encode()
    body = f"{len(command) + 4:04x}".encode() + command + b"0000" + b"PACK\x00\x00\x00\x02" + os.urandom(5000)
    corrupt = httpx.post(url, content=body, auth=("me", WRITE_TOKEN), headers=headers)
    assert corrupt.status_code == 200
    assert b"unpack " in corrupt.content and b"unpack ok" not in corrupt.content
    assert remote_ref(git, asgi_server.url, "asgi-garbage") == sha
    fsck = git("--git-dir", str(asgi_server.home / "repos" / "asgi-garbage.git"), "fsck", "--strict")
    assert fsck.returncode == 0
    assert zero  # the zero id is what a create would carry; not needed here


@pytest.mark.parametrize(
    "path",
    [
        "/git/../x.git/info/refs?service=git-upload-pack",
        "/git/a%2f..%2fb.git/info/refs?service=git-upload-pack",
        "/git/..%2f..%2fetc.git/info/refs?service=git-upload-pack",
        "/git/A.git/info/refs?service=git-upload-pack",
        "/git/x.git/objects/info/packs",
        "/git/x.git/HEAD",
    ],
)
def test_path_tricks_are_404(asgi_server, path):
    # http.client sends the path exactly as written (no dot-segment clean-up, unlike browsers and httpx).
    host, port = asgi_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers={"Authorization": "Basic Z2l0OnJ3LXRva2Vu"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 404


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_big_push_and_clone_stream_with_bounded_memory(asgi_server, git, work, tmp_path):
    add_remote(git, work, asgi_server, "asgi-big")
    git("push", "origin", "HEAD:main", cwd=work)  # warm the worker up first
    (worker,) = worker_pids(asgi_server.pid)
    # Reset the worker's peak RSS to its current RSS, so earlier tests' peaks cannot hide this one's.
    Path(f"/proc/{worker}/clear_refs").write_text("5")
    before = peak_rss_kib(worker)
    size = 20 * 2**20
    sha = git.commit(work, "big", {"big.bin": os.urandom(size)})
    started = time.monotonic()
    git("push", "origin", "HEAD:main", cwd=work)
    pushed_in = time.monotonic() - started
    clone = tmp_path / "clone"
    git("clone", remote_url(asgi_server.url, "asgi-big", READ_TOKEN), str(clone))
    assert (clone / "big.bin").stat().st_size == size
    assert remote_ref(git, asgi_server.url, "asgi-big") == sha
    growth_mib = (peak_rss_kib(worker) - before) / 1024
    print(f"20 MiB push in {pushed_in:.2f}s; worker peak RSS {before / 1024:.1f} -> +{growth_mib:.1f} MiB")
    # Buffering the body or the clone whole would add at least 20 MiB.
    assert growth_mib < 10


def test_a_second_push_waits_visibly_for_the_first(asgi_server, git, work, tmp_path):
    add_remote(git, work, asgi_server, "asgi-queue")
    git("push", "origin", "HEAD:main", cwd=work)
    other = tmp_path / "other"
    git("clone", remote_url(asgi_server.url, "asgi-queue"), str(other))
    git.commit(other, "a feature")
    git.commit(work, "slow one\n\nberth-test: hold 3")
    first = subprocess.Popen(
        ["git", "push", "origin", "HEAD:main"], cwd=work, env=git.env, stderr=subprocess.PIPE, text=True
    )
    try:
        # The first push holds the app once its hook speaks.
        assert "holding asgi-queue" in first.stderr.readline()
        second = git.timed("push", "origin", "HEAD:feature", cwd=other)
        first_rest = first.stderr.read()
        assert first.wait(timeout=60) == 0, first_rest
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 0, second.stderr
    assert "remote: waiting for the previous push of asgi-queue to finish…" in second.stderr
    assert "remote: feature: not deployed: only main deploys" in second.stderr
    waited_line = next(seen for seen, line in second.lines if "waiting for the previous push" in line)
    not_deployed_line = next(seen for seen, line in second.lines if "not deployed" in line)
    # It went on only once the first push was done with the app (3 s hold).
    assert not_deployed_line - waited_line > 1.0


def test_an_abandoned_push_is_stopped_and_frees_the_app(asgi_server, git, work):
    add_remote(git, work, asgi_server, "asgi-abandon")
    before = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    git.commit(work, "endless\n\nberth-test: hold 60")
    repo = asgi_server.home / "repos" / "asgi-abandon.git"
    lock = repo / "berth-push.lock"

    def processes_in_repo():
        # receive-pack and the hook run with the repository as working directory.
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/cwd") == str(repo):
                    found.append(pid)
            except OSError:
                continue
        return found

    process = subprocess.Popen(
        ["git", "push", "origin", "HEAD:main"],
        cwd=work,
        env=git.env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # Wait until the hook runs, then walk away as Ctrl-C does: the whole group, git-remote-http included.
    seen = process.stderr.readline()
    assert "holding asgi-abandon" in seen
    assert processes_in_repo()
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)  # a loaded machine (parallel tiers) is slow to unwind git-remote-http

    def lock_free():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    wait_for(lock_free, timeout=15, message="the abandoned push to be stopped")
    wait_for(lambda: not processes_in_repo(), timeout=10, message="receive-pack and the hook to be gone")
    assert remote_ref(git, asgi_server.url, "asgi-abandon") == before


def test_a_fetch_with_a_gzipped_negotiation_works(asgi_server, git, work, tmp_path):
    add_remote(git, work, asgi_server, "asgi-gzip")
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "origin", "HEAD:main", cwd=work)
    # Many commits the server lacks: git lists them as "have" lines, and gzips requests over 1 KiB.
    local = tmp_path / "local"
    git("init", "-q", "-b", "main", str(local))
    for number in range(80):
        git("commit", "-q", "--allow-empty", "-m", f"local {number}", cwd=local)
    git("remote", "add", "origin", remote_url(asgi_server.url, "asgi-gzip", READ_TOKEN), cwd=local)
    result = subprocess.run(
        ["git", "fetch", "origin"],
        cwd=local,
        env={**git.env, "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Content-Encoding: gzip" in result.stderr
    assert git("rev-parse", "origin/main", cwd=local).stdout.strip() == sha
