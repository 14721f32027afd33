"""The async git view under WSGI (Django's threaded live server runs it through async_to_sync)."""

import httpx
import pytest

from tests.gitserver.conftest import remote_ref, remote_url
from tests.gitserver.fakes import READ_TOKEN

pytestmark = pytest.mark.urls("tests.gitserver.urls")


def test_clone_push_fetch_and_clone_again_under_wsgi(wsgi_server, git, tmp_path):
    url = remote_url(wsgi_server.url, "wsgi-app")
    work = tmp_path / "work"
    cloned = git("clone", url, str(work))
    assert "empty repository" in cloned.stderr
    sha = git.commit(work, "first")
    pushed = git("push", "origin", "HEAD:main", cwd=work)
    assert f"remote: deployed wsgi-app {sha[:7]} for alice" in pushed.stderr
    assert remote_ref(git, wsgi_server.url, "wsgi-app") == sha

    again = tmp_path / "again"
    git("clone", remote_url(wsgi_server.url, "wsgi-app", READ_TOKEN), str(again))
    assert git("rev-parse", "HEAD", cwd=again).stdout.strip() == sha
    second = git.commit(work, "second")
    git("push", "origin", "HEAD:main", cwd=work)
    git("fetch", "origin", cwd=again)
    assert git("rev-parse", "origin/main", cwd=again).stdout.strip() == second


def test_a_push_over_the_limit_with_a_content_length_is_refused_before_reading_it(
    wsgi_server, git, tmp_path, monkeypatch
):
    from berth.gitserver import conf

    monkeypatch.setattr(conf, "MAX_PUSH_BYTES", 100_000)
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    # Incompressible and under git's 1 MiB http.postBuffer, so it goes with a Content-Length.
    git.commit(work, "too big", {"blob.bin": __import__("os").urandom(300_000)})
    git("remote", "add", "origin", remote_url(wsgi_server.url, "wsgi-limit"), cwd=work)
    result = git("push", "origin", "HEAD:main", cwd=work, check=False)
    assert result.returncode != 0
    # git shows an HTTP 413 only as "RPC failed", so git clients get the refusal in git's protocol.
    assert "remote: error: push too large: 0.3 MiB is over this Berth's limit of 0.1 MiB" in result.stderr
    assert "-> main (push too large)" in result.stderr
    assert remote_ref(git, wsgi_server.url, "wsgi-limit") is None
    response = httpx.post(
        f"{wsgi_server.url}/git/wsgi-limit.git/git-receive-pack",
        content=b"0" * 200_000,
        auth=("git", "rw-token"),
        headers={"Content-Type": "application/x-git-receive-pack-request"},
    )
    assert response.status_code == 413
    assert "over this Berth's limit of 0.1 MiB (100000 bytes" in response.text
    assert "BERTH_GIT_MAX_PUSH_BYTES" in response.text
