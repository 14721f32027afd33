"""Deploys from elsewhere through the running platform: an app follows a git repository served by a local git
server (dumb HTTP on 127.0.0.1, which BERTH_WEBHOOKS_ALLOW_PRIVATE lets Berth reach); a signed push webhook makes
Berth fetch and deploy the pushed commit; a bad signature or another branch deploys nothing."""

import hashlib
import hmac
import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import free_port, wait_for, write_hello_app
from tests.e2e.test_push_to_live import get, git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture
def platform_env():
    return {"BERTH_WEBHOOKS_ALLOW_PRIVATE": "1"}


@pytest.fixture
def git_host(tmp_path):
    """A bare repository served over git's dumb HTTP protocol on 127.0.0.1, and a clone to push to it from."""
    served = tmp_path / "served"
    bare = served / "shop.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(bare))

    def push(message: str, branch: str = "main") -> str:
        write_hello_app(work, message)
        git(work, "add", "-A")
        git(work, "-c", "user.email=dev@example.test", "-c", "user.name=dev", "commit", "-q", "-m", message)
        git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        subprocess.run(["git", "--git-dir", str(bare), "update-server-info"], check=True)
        return git(work, "rev-parse", "HEAD").stdout.strip()

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(serving, timeout=10, message="the git host")
    yield f"http://127.0.0.1:{port}/shop.git", push
    server.terminate()
    server.wait(timeout=10)


def test_a_signed_push_webhook_deploys_the_pushed_commit(tenant, berth_platform, git_host):
    from berth.builds.models import Build
    from berth.builds.repos import repo_path

    url, push = git_host
    app = tenant.app
    api = httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    answer = api.put(f"/apps/{app.name}/source", json={"url": url})
    assert answer.status_code == 200, answer.text
    secret, webhook = answer.json()["secret"], answer.json()["webhook_url"]
    assert webhook == f"{berth_platform.web_url}/hooks/git/{app.name}"
    assert "secret" not in api.get(f"/apps/{app.name}/source").json()

    def deliver(payload: dict, *, key: str = secret, style: str = "github") -> httpx.Response:
        body = json.dumps(payload).encode()
        digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json"}
        if style == "github":
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        elif style == "gitea":
            headers["X-Gitea-Signature"] = digest
        else:
            headers["X-Gitlab-Token"] = key
        return httpx.post(webhook, content=body, headers=headers, timeout=30)

    first = push("from the other host")
    refused = deliver({"ref": "refs/heads/main", "after": first}, key="not-the-secret")
    assert refused.status_code == 401 and "signature" in refused.json()["detail"]
    accepted = deliver({"ref": "refs/heads/main", "after": first})
    assert accepted.status_code == 202, accepted.text
    host = f"{app.name}.localhost"
    wait_for(lambda: get(berth_platform.router_port, host).text.strip() == "from the other host", timeout=240)
    build = wait_for(
        lambda: Build.objects.filter(app=app, git_sha=first, status="succeeded").first(),
        timeout=60,
        message="the build to end as succeeded",
    )
    assert build.git_ref == "refs/heads/main"
    # the app's own repository records what runs, as after a `git push berth`
    repo = repo_path(app_name=app.name)
    wait_for(
        lambda: git(repo, "rev-parse", "refs/heads/main", check=False).stdout.strip() == first,
        timeout=30,
        message="the app's repository to record the deployed commit",
    )

    # another branch, and a redelivery of the same push: nothing new is built
    other = push("a feature", branch="feature")
    assert deliver({"ref": "refs/heads/feature", "after": other}).status_code == 202
    assert deliver({"ref": "refs/heads/main", "after": first}).status_code == 202
    second = push("second, by gitea")
    assert deliver({"ref": "refs/heads/main", "after": second}, style="gitea").status_code == 202
    wait_for(lambda: get(berth_platform.router_port, host).text.strip() == "second, by gitea", timeout=240)
    assert Build.objects.filter(app=app).count() == 2  # the feature branch and the redelivery built nothing
    third = push("third, by gitlab")
    assert deliver({"ref": "refs/heads/main", "checkout_sha": third}, style="gitlab").status_code == 202
    wait_for(lambda: get(berth_platform.router_port, host).text.strip() == "third, by gitlab", timeout=240)

    assert api.delete(f"/apps/{app.name}/source").status_code == 204
    assert deliver({"ref": "refs/heads/main", "after": third}).status_code == 404
