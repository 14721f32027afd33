"""A first deploy done only from what the app page says (issue 20): in a real browser against the whole running
platform, "Create a deploy token" shows a `git remote add` line; that exact line and the page's `git push` line put
the app live; then the walkthrough is gone."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_hello_app
from tests.e2e.test_push_to_live import get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def run(repo: Path, command: str) -> subprocess.CompletedProcess:
    """A line from the page, run as a person would paste it (split as a shell would, no shell)."""
    return subprocess.run(shlex.split(command), cwd=repo, capture_output=True, text=True, timeout=300)


def test_the_walkthroughs_git_remote_line_and_push_put_the_app_live(berth_platform, tenant, tmp_path, page):
    app = tenant.app.name
    repo = tmp_path / "src"
    repo.mkdir()
    for line in ("git init -q -b main", "git config user.email dev@example.test", "git config user.name dev"):
        assert run(repo, line).returncode == 0
    write_hello_app(repo, "first deploy")
    assert run(repo, "git add -A").returncode == 0
    assert run(repo, "git commit -q -m first").returncode == 0

    page.goto(f"/apps/{app}/")
    assert page.locator("#first-deploy-login").inner_text() == f"berth login {berth_platform.web_url}"
    page.click("#first-deploy-token-create")
    page.wait_for_url(re.compile(r".*#first-deploy$"))
    remote_line = page.locator("#first-deploy-git-remote").inner_text().strip()
    push_line = page.locator("#first-deploy-git-push").inner_text().strip()
    assert remote_line.startswith("git remote add berth http://dev:berth_")
    assert push_line == "git push berth main"

    added = run(repo, remote_line)
    assert added.returncode == 0, added.stderr
    pushed = run(repo, push_line)
    assert pushed.returncode == 0, pushed.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    assert "remote: -----> Released v1" in pushed.stderr
    assert get(berth_platform.router_port, f"{app}.localhost").text.strip() == "first deploy"

    page.goto(f"/apps/{app}/")
    page.locator('tr[data-release="1"]').wait_for()
    assert page.locator("#first-deploy").count() == 0  # the app has a release: no walkthrough
