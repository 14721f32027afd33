"""A real `git push` of a Python app with a third-party dependency from PyPI (through this machine's HTTPS proxy,
whose CA reaches the build as BERTH_BUILD_CA_BUNDLE) and of a static site: live `remote:` lines, then the app
answers through the router. Set BERTH_TRANSCRIPTS_DIR to keep the transcripts."""

import pytest

from tests.e2e import test_builds_support as support
from tests.e2e.test_builds_support import get_app_page, keep_transcript

repo, api, app_name = support.repo, support.api, support.app_name  # fixtures

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_python_app_with_a_pypi_dependency_builds_through_the_proxy_and_answers(repo, berth_platform, api):
    repo.copy_fixture("python")
    # a requirements.txt of its own, so the engine's cache cannot skip pip: flask really comes from PyPI
    requirements = repo.path / "requirements.txt"
    requirements.write_text(f"# {repo.app}\n{requirements.read_text()}")
    sha = repo.commit("flask app")
    push = repo.push()
    keep_transcript("python-push", f"$ git push berth main\n{push.stderr}")
    out = push.stderr
    assert push.returncode == 0, out + (berth_platform.logs / "worker.log").read_text()[-3000:]
    lines = [
        line.removeprefix("remote: ").rstrip() for line in out.splitlines() if line.startswith("remote: ")
    ]
    assert "-----> Python app detected" in lines
    # Berth's steps, live, the tools' lines under them; the engine's step lines only in the full log
    assert "-----> Installing dependencies with pip" in lines
    assert not any(line.startswith("Step ") for line in lines)
    assert any("Successfully installed" in line and "flask" in line.lower() for line in lines), out
    assert "-----> Released v1" in lines
    assert any(f"http://{repo.app}.localhost" in line for line in lines), out
    # the order the pusher saw them in
    order = [lines.index(x) for x in ("-----> Python app detected", "-----> Released v1")]
    assert order == sorted(order)

    answer = get_app_page(berth_platform.router_port, repo.app)
    assert answer.status_code == 200 and answer.text.startswith("hello from python on port"), answer.text
    assert repo.remote_head() == sha
    build = api.get(f"/apps/{repo.app}/builds").json()[0]
    assert (build["status"], build["buildpack"], build["release"], build["git_sha"]) == (
        "succeeded",
        "python",
        1,
        sha,
    )
    detail = api.get(f"/apps/{repo.app}/builds/{build['id']}").json()
    assert "-----> Released v1" in detail["log"]
    assert "Step 1/" in detail["log"]  # the full log keeps what the push left out

    # a code-only change: the dependency layer comes from the cache
    (repo.path / "app.py").write_text((repo.path / "app.py").read_text().replace("hello from", "hi from"))
    repo.commit("code only")
    again = repo.push()
    keep_transcript("python-push-code-only", f"$ git push berth main\n{again.stderr}")
    assert again.returncode == 0, again.stderr
    assert "remote: -----> Released v2" in again.stderr
    assert "Successfully installed" not in again.stderr  # pip did not run again
    assert get_app_page(berth_platform.router_port, repo.app).text.startswith("hi from python")


def test_static_site_builds_and_is_served(repo, berth_platform):
    repo.copy_fixture("static")
    repo.commit("site")
    push = repo.push()
    keep_transcript("static-push", f"$ git push berth main\n{push.stderr}")
    assert push.returncode == 0, push.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    assert "remote: -----> Static site app detected" in push.stderr
    assert "remote: -----> Released v1" in push.stderr
    answer = get_app_page(berth_platform.router_port, repo.app)
    expected = (repo.path / "public/index.html").read_text()
    assert answer.status_code == 200 and answer.text == expected
    assert get_app_page(berth_platform.router_port, repo.app, "/missing").status_code == 404


@pytest.fixture
def build_ca_bundle(request, monkeypatch):
    """The platform's processes start with BERTH_BUILD_CA_BUNDLE=<param> (list it before berth_platform)."""
    monkeypatch.setenv("BERTH_BUILD_CA_BUNDLE", request.param)
    return request.param


@pytest.mark.parametrize("build_ca_bundle", ["none", "/etc/ssl/certs/no-such-bundle.pem"], indirect=True)
def test_without_the_hosts_ca_bundle_the_dependency_cannot_be_installed_and_the_push_says_why(
    build_ca_bundle, berth_platform, repo
):
    """The CA bundle is what makes the proxy work: with it off pip fails on the proxy's certificate; a configured
    bundle that is missing fails the build at once, saying which file."""
    assert berth_platform.env["BERTH_BUILD_CA_BUNDLE"] == build_ca_bundle
    repo.copy_fixture("python")
    requirements = repo.path / "requirements.txt"
    requirements.write_text(f"# {repo.app} without CA\n{requirements.read_text()}")
    repo.commit("flask app")
    push = repo.push()
    keep_transcript(
        f"ca-bundle-{build_ca_bundle.strip('/').replace('/', '-')}", f"$ git push berth main\n{push.stderr}"
    )
    assert push.returncode != 0
    if build_ca_bundle == "none":
        assert "CERTIFICATE_VERIFY_FAILED" in push.stderr, push.stderr[-3000:]
        assert "remote: error: Installing dependencies with pip failed (exit code 1)" in push.stderr
    else:
        assert f"remote: error: the build CA bundle {build_ca_bundle} does not exist" in push.stderr, (
            push.stderr
        )
    assert repo.remote_head() is None
