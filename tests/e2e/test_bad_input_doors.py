"""Hostile input at every door of a live app, across the layers (git server → build → release → router, and the
API → services → swarm): each is refused with a clear error, nothing is half-applied, and the live release keeps
serving through the router. Unit-level refusals are in tests/gitserver and tests/api; these check what
a user sees end to end and that nothing behind the door moved."""

import os
import subprocess

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.faults_support import api, make_repo, own_redis, push_live  # noqa: F401  (fixtures)
from tests.e2e.test_push_to_live import get, git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

MAX_PUSH_BYTES = 256 * 1024
NO_PROMPT = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}


@pytest.fixture
def platform_env(own_redis):  # noqa: F811  (overrides the conftest fixture, uses the imported one)
    return {"REDIS_URL": own_redis.url, "BERTH_GIT_MAX_PUSH_BYTES": str(MAX_PUSH_BYTES)}


class LiveApp:
    """The tenant's app, live with one release; `untouched()` asserts nothing about it moved."""

    def __init__(self, tenant, platform, repo):
        from berth.releases.models import Release

        self.tenant, self.platform, self.repo = tenant, platform, repo
        self.name = tenant.app.name
        push_live(repo, platform, self.name, "stable")
        self.head = git(repo, "rev-parse", "HEAD").stdout.strip()
        self.releases = list(Release.objects.filter(app=tenant.app).values_list("version", "status"))

    def untouched(self, what: str) -> None:
        from berth.apps.models import App, Domain
        from berth.builds.models import Build
        from berth.releases.models import Release

        answer = get(self.platform.router_port, f"{self.name}.localhost")
        assert (answer.status_code, answer.text.strip()) == (200, "stable"), what
        assert list(Release.objects.filter(app=self.tenant.app).values_list("version", "status")) == (
            self.releases
        ), what
        assert not Build.objects.filter(app=self.tenant.app, status__in=["queued", "building"]).exists(), what
        remote = git(self.repo, "ls-remote", "berth", "refs/heads/main").stdout.split()
        assert remote and remote[0] == self.head, what
        assert list(App.objects.values_list("name", flat=True)) == [self.name], what
        assert not Domain.objects.exists(), what
        # the local clone goes back to what runs, for the next case
        git(self.repo, "reset", "-q", "--hard", self.head)
        git(self.repo, "clean", "-qfdx")


@pytest.fixture
def live(tmp_path, tenant, berth_platform):
    repo = make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app_name=tenant.app.name
    )
    return LiveApp(tenant, berth_platform, repo)


def _push(repo, *args: str, url: str = "berth", ref: str = "main") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "push", *args, url, ref], cwd=repo, env=NO_PROMPT, capture_output=True, text=True, timeout=300
    )


def _commit(repo, files: dict[str, str | bytes], message: str) -> None:
    for name, content in files.items():
        path = repo / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_hostile_git_pushes_are_refused_clearly_and_the_live_release_keeps_serving(live):
    base = live.platform.web_url
    token = live.tenant.token

    wrong_token = _push(
        live.repo, url=base.replace("http://", "http://git:not-a-token@") + f"/git/{live.name}.git"
    )
    assert wrong_token.returncode != 0
    assert "authentication failed" in wrong_token.stderr.lower(), wrong_token.stderr
    live.untouched("wrong token")

    for name in ["t-e2e-nosuchapp", "..%2F..%2Fetc", "%2e%2e", live.name + "%00"]:
        unknown = _push(live.repo, url=base.replace("http://", f"http://git:{token}@") + f"/git/{name}.git")
        assert unknown.returncode != 0, name
        assert "not found" in unknown.stderr.lower() or "no app" in unknown.stderr.lower(), (
            name,
            unknown.stderr,
        )
        live.untouched(f"unknown app {name}")
    # no repository was made for any of those names (only the app's own, beside its lock file)
    assert sorted(p.name for p in (live.platform.home / "repos").glob("*.git")) == [f"{live.name}.git"]

    _commit(live.repo, {"blob.bin": os.urandom(4 * MAX_PUSH_BYTES)}, "oversized")
    oversized = _push(live.repo)
    assert oversized.returncode != 0
    assert "BERTH_GIT_MAX_PUSH_BYTES" in oversized.stderr or "too large" in oversized.stderr.lower(), (
        oversized.stderr[-2000:]
    )
    live.untouched("oversized push")

    # a receive-pack request whose pack is garbage: refused, never a 5xx, the ref does not move
    command = f"{live.head} {'1' * 40} refs/heads/main\0report-status\n"
    body = f"{len(command) + 4:04x}{command}0000".encode() + b"PACK\x00\x00\x00\x02" + os.urandom(4096)
    garbage = httpx.post(
        f"{base}/git/{live.name}.git/git-receive-pack",
        content=body,
        auth=("git", token),
        headers={"Content-Type": "application/x-git-receive-pack-request"},
        timeout=60,
    )
    assert garbage.status_code < 500, garbage.text[:500]
    assert b"ok refs/heads/main" not in garbage.content
    live.untouched("garbage packfile")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"Procfile": "web: python3 app.py\nbad name!: echo\n"}, "Procfile", id="procfile-bad-name"
        ),
        pytest.param({"Procfile": "web:\n"}, "Procfile", id="procfile-empty-command"),
        pytest.param({"Procfile": "\x00\xff garbage"}, "Procfile", id="procfile-binary"),
        pytest.param({"Procfile": "web: x\n" * 40_000}, "Procfile", id="procfile-huge"),
        pytest.param(
            {"Dockerfile": "FROM berth/stack:bookworm\nRUN exit 3\n"},
            "non-zero code: 3",
            id="dockerfile-failing-run",
        ),
        pytest.param(
            {"Dockerfile": "FROM nosuch.invalid/berth/none:1\n"},
            "nosuch.invalid",
            id="dockerfile-unknown-base",
        ),
        pytest.param({"Dockerfile": "this is not a dockerfile\n"}, "error", id="dockerfile-garbage"),
    ],
)
def test_hostile_procfiles_and_dockerfiles_fail_the_build_and_the_live_release_keeps_serving(
    live, files, expected
):
    from berth.builds.models import Build

    _commit(live.repo, files, "hostile")
    pushed = _push(live.repo)
    assert pushed.returncode != 0
    assert "remote: error:" in pushed.stderr, pushed.stderr[-2000:]
    assert expected.lower() in pushed.stderr.lower(), pushed.stderr[-2000:]
    assert "Traceback" not in pushed.stderr
    assert Build.objects.filter(app=live.tenant.app).latest("pk").status == "failed"
    live.untouched(str(files)[:80])


HOSTILE_APP_NAMES = [
    "../etc",
    "a" * 300,
    "UPPER",
    "x;rm -rf /",
    "",
    "t-e2e-\u00e9",
    "git",
    "-rf",
    "a\nb",
    "a\x00b",
]
HOSTILE_DOMAINS = [
    "*.evil.test",
    "a..b.test",
    "x" * 300 + ".test",
    "evil.test\r\nX-Injected: 1",
    "-lead.test",
    "a b.test",
    "evil.test/path",
    "",
]
HOSTILE_CONFIG = [
    {"1BAD": "x"},
    {"A=B": "x"},
    {"": "x"},
    {"A B": "x"},
    {"X": "a\x00b"},
    {"X": 5},
    {"X": ["a"]},
]
HOSTILE_IMAGES = [
    "--help",
    "x;rm -rf /",
    "../../etc/passwd",
    "a" * 600,
    "UPPER/Case:tag",
    "name:tag:tag",
    "\n",
]


def test_hostile_names_domains_config_and_images_are_refused_clearly_with_nothing_half_applied(live):
    with api(live.platform, live.tenant.token) as client:
        app_url = f"/api/v1/apps/{live.name}"
        for name in HOSTILE_APP_NAMES:
            _refused(client.post("/api/v1/apps", json={"name": name, "team": live.tenant.team.name}), name)
        live.untouched("app names")
        for hostname in HOSTILE_DOMAINS:
            _refused(client.post(f"{app_url}/domains", json={"hostname": hostname}), hostname)
        live.untouched("domains")
        before = client.get(f"{app_url}/config").json()
        for change in HOSTILE_CONFIG:
            _refused(client.patch(f"{app_url}/config", json=change), change)
        _refused(client.patch(f"{app_url}/config", json=["A", "B"]), "a list")
        assert client.get(f"{app_url}/config").json() == before
        live.untouched("config")
        for image in HOSTILE_IMAGES:
            _refused(client.post(f"{app_url}/deploys", json={"image": image}), image)
        live.untouched("image references")
        formation = client.get(f"{app_url}/formation").json()
        for change in [
            [{"process": "web", "replicas": -1}],
            [{"process": "web", "replicas": 10**9}],
            [{"process": "web", "replicas": 1, "memory_mb": 1}],
            [{"process": "nosuch", "replicas": 1}],
            [{"process": "web; rm -rf /", "replicas": 1}],
            {"process": "web", "replicas": 2},
        ]:
            _refused(client.patch(f"{app_url}/formation", json=change), change)
        assert client.get(f"{app_url}/formation").json() == formation
        live.untouched("formation")


def test_an_image_that_cannot_be_pulled_fails_its_deploy_clearly_and_the_live_release_keeps_serving(live):
    from berth.builds.models import Build

    with api(live.platform, live.tenant.token) as client:
        # well formed, but nothing listens there (no registry is reachable from this machine anyway)
        answer = client.post(f"/api/v1/apps/{live.name}/deploys", json={"image": "127.0.0.1:9/none/such:1"})
    assert answer.is_success, answer.text
    build = wait_for(
        lambda: Build.objects.filter(app=live.tenant.app, source="image", status="failed").first(),
        timeout=120,
        message="the image deploy to fail",
    )
    assert "cannot pull 127.0.0.1:9/none/such:1" in build.status_reason + build.log, build.status_reason
    live.untouched("unpullable image")


def _refused(response: httpx.Response, what) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    detail = response.json().get("detail")
    assert isinstance(detail, str) and detail.strip(), (what, response.text[:300])
