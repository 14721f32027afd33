"""Heroku's push semantics end to end: other branches stored and not deployed, the deploy branch cannot be deleted,
a forced push deploys, every kind of bad push says why in a `remote: error:` line and the previous release keeps
serving, unknown apps and wrong tokens are told so, and the per-app deploy branch is honoured."""

import os

import pytest

from tests.conftest import hello_app
from tests.e2e import test_builds_support as support
from tests.e2e.test_builds_support import get_app_page, keep_transcript, make_repo

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

repo, api, app_name = support.repo, support.api, support.app_name  # fixtures


@pytest.fixture(autouse=True)
def no_credential_prompt(monkeypatch):
    # git asks for a password on a 401 when it has a terminal; the tests want its answer, not a prompt
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")


def remote_lines(out: str) -> list[str]:
    return [
        line.removeprefix("remote: ").rstrip() for line in out.splitlines() if line.startswith("remote: ")
    ]


def deploy_stdlib(repo, message: str) -> str:
    repo.write({"requirements.txt": "", "app.py": hello_app(message)})
    sha = repo.commit(message)
    push = repo.push()
    assert push.returncode == 0, push.stderr
    return sha


def releases(api, app: str) -> list[tuple[int, str]]:
    return [(r["version"], r["status"]) for r in api.get(f"/apps/{app}/releases").json()]


def test_branches_deletion_and_forced_pushes(repo, berth_platform, api):
    app, port = repo.app, berth_platform.router_port
    first = deploy_stdlib(repo, "one")
    assert get_app_page(port, app).text == "one\n"

    # another branch is stored, and the pusher is told it was not deployed
    repo.git("checkout", "-q", "-b", "feature")
    repo.write({"app.py": hello_app("feature")})
    feature = repo.commit("feature work")
    push = repo.push("feature")
    assert push.returncode == 0, push.stderr
    assert "feature: not deployed: only main deploys" in remote_lines(push.stderr)
    assert "Build" not in push.stderr
    assert repo.remote_head("feature") == feature
    assert len(api.get(f"/apps/{app}/builds").json()) == 1
    assert get_app_page(port, app).text == "one\n"

    # the deploy branch cannot be deleted; another branch can
    push = repo.push(":main")
    assert push.returncode != 0
    assert "error: deleting the deploy branch is not allowed" in remote_lines(push.stderr)
    assert repo.remote_head("main") == first
    push = repo.push(":feature")
    assert push.returncode == 0, push.stderr
    assert repo.remote_head("feature") is None

    # a rewritten history (non-fast-forward) is accepted when forced, and deploys, as on Heroku
    repo.git("checkout", "-q", "main")
    repo.write({"app.py": hello_app("rewritten")})
    repo.git("add", "-A")
    repo.git("commit", "-q", "--amend", "-m", "rewritten")
    rewritten = repo.head()
    assert repo.push().returncode != 0  # git itself refuses a non-fast-forward without --force
    push = repo.push(force=True)
    assert push.returncode == 0, push.stderr
    assert "-----> Released v2" in remote_lines(push.stderr)
    assert "forced update" in push.stderr
    assert repo.remote_head("main") == rewritten
    assert get_app_page(port, app).text == "rewritten\n"


def test_each_bad_push_says_why_and_the_previous_release_keeps_serving(repo, berth_platform, api):
    app, port = repo.app, berth_platform.router_port
    stable = deploy_stdlib(repo, "stable")
    cases = {
        "broken Procfile": (
            {"Procfile": "web: python app.py\nnot a process line\n"},
            (),
            "error: Procfile line 2: expected `name: command`, got 'not a process line'",
        ),
        "failing Dockerfile": (
            {"Dockerfile": "FROM berth/stack:bookworm\nRUN echo about to fail && exit 3\n"},
            ("Procfile",),
            "error: the Dockerfile's step 2 failed: RUN echo about to fail && exit 3 returned a non-zero code: 3",
        ),
        "nothing detected": (
            {"README.md": "just words\n"},
            ("Procfile", "Dockerfile", "app.py", "requirements.txt"),
            "error: no buildpack detected: add a requirements.txt, package.json, go.mod, index.html or Dockerfile",
        ),
    }
    for name, (files, removed, expected) in cases.items():
        repo.git("reset", "-q", "--hard", stable)
        repo.remove(*removed)
        repo.write(files)
        repo.commit(name)
        push = repo.push()
        keep_transcript(f"refused-{name.replace(' ', '-')}", f"$ git push berth main\n{push.stderr}")
        lines = remote_lines(push.stderr)
        assert push.returncode != 0, (name, push.stderr)
        assert expected in lines, (name, push.stderr)
        assert "[remote rejected] main -> main (pre-receive hook declined)" in push.stderr, name
        assert any(line.startswith("error: build ") and "the push was not accepted" in line for line in lines)
        assert repo.remote_head() == stable, name  # the repository still matches what runs
        assert get_app_page(port, app).text == "stable\n", name
        assert releases(api, app)[0] == (1, "live"), name
        build = api.get(f"/apps/{app}/builds").json()[0]
        assert build["status"] == "failed" and build["status_reason"].endswith(
            expected.removeprefix("error: ")
        )
        # the failure is said once, last, in the kept log
        log = api.get(f"/apps/{app}/builds/{build['id']}").json()["log"].splitlines()
        assert log[-1] == expected and log.count(expected) == 1, (name, log[-5:])


def test_unknown_app_wrong_token_and_read_only_role_are_refused_clearly(
    tmp_path, repo, berth_platform, tenant
):
    from berth.accounts.services import membership_add, token_create
    from django.contrib.auth import get_user_model

    repo.write({"requirements.txt": "", "app.py": hello_app("x")})
    repo.commit("x")

    unknown = make_repo(tmp_path, berth_platform, tenant, "t-e2e-no-such-app", name="unknown")
    unknown.write({"a.txt": "a"})
    unknown.commit("a")
    push = unknown.push()
    assert push.returncode != 0
    assert "remote: no app named t-e2e-no-such-app" in push.stderr, push.stderr

    wrong = make_repo(tmp_path, berth_platform, tenant, repo.app, name="wrong", token="not-a-token")
    wrong.write({"a.txt": "a"})
    wrong.commit("a")
    push = wrong.push()
    assert push.returncode != 0
    assert "Authentication failed" in push.stderr, push.stderr

    viewer = get_user_model().objects.create_user(
        username="watcher", email="w@example.test", password="pw-654321"
    )
    membership_add(team=tenant.team, user=viewer, role="viewer", actor=tenant.user)
    _, viewer_token = token_create(user=viewer, name="ro")
    read_only = make_repo(tmp_path, berth_platform, tenant, repo.app, name="ro", token=viewer_token)
    read_only.write({"a.txt": "a"})
    read_only.commit("a")
    push = read_only.push()
    assert push.returncode != 0
    assert f"remote: pushing to {repo.app} needs the member role; you are viewer" in push.stderr, push.stderr
    assert repo.remote_head() is None  # nothing landed
    assert os.environ["GIT_TERMINAL_PROMPT"] == "0"


def test_the_apps_deploy_branch_setting_is_honoured(tmp_path, berth_platform, tenant, app_name, api):
    app, port = app_name, berth_platform.router_port
    answer = api.patch(f"/apps/{app}", json={"deploy_branch": "master"})
    assert answer.status_code == 200 and answer.json()["deploy_branch"] == "master", answer.text
    repo = make_repo(tmp_path, berth_platform, tenant, app, branch="master")
    repo.write({"requirements.txt": "", "app.py": hello_app("from master")})
    repo.commit("master")
    push = repo.push("master")
    assert push.returncode == 0, push.stderr
    assert "-----> Released v1" in remote_lines(push.stderr)
    assert get_app_page(port, app).text == "from master\n"

    repo.git("checkout", "-q", "-b", "main")
    repo.write({"app.py": hello_app("from main")})
    repo.commit("main")
    push = repo.push("main")
    assert push.returncode == 0, push.stderr
    assert "main: not deployed: only master deploys" in remote_lines(push.stderr)
    assert get_app_page(port, app).text == "from master\n"
    push = repo.push(":master")
    assert "error: deleting the deploy branch is not allowed" in remote_lines(push.stderr)
    # a clone checks out the deploy branch
    clone = tmp_path / "clone"
    out = repo.git("clone", "-q", repo.url, str(clone))
    assert out.returncode == 0
    assert (clone / "app.py").read_text() == hello_app("from master")
