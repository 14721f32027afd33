"""Bad releases, end to end: an app that never binds $PORT, one that crashes at boot, one that answers 500, an image
with no command, a failing release command. Each push is refused with a clear reason, the release is failed, and
the old release keeps serving every request. A release command that works runs once, before the cut-over."""

import time

import pytest

from tests.e2e.load import Load
from tests.e2e.run_route_support import (  # noqa: F401  (_settled_containers: autouse)
    _settled_containers,
    body_of,
    events,
    git,
    make_repo,
    push,
    push_ok,
    web_services,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

BOOT_TIMEOUT = 12


@pytest.fixture
def platform_env():
    # a short boot deadline, so a release that never gets ready fails in seconds rather than a minute
    return {"BERTH_BOOT_TIMEOUT": str(BOOT_TIMEOUT)}


@pytest.fixture
def repo(tmp_path, tenant, berth_platform):
    return make_repo(
        tmp_path / "src", web_url=berth_platform.web_url, token=tenant.token, app=tenant.app.name
    )


NO_COMMAND = {"Dockerfile": "FROM berth/stack:bookworm\nRUN echo built\n"}

BAD = [
    # (what, push kwargs, words the push's error and the release's reason must hold)
    ("never binds $PORT", {"mode": "noport"}, "did not answer HTTP on $PORT"),
    ("answers 500", {"mode": "fail"}, "status 500 or above"),
    # gone before Swarm reports it running ("tasks failed"), or just after, while it boots (4 Docker workers: once)
    ("crashes at boot", {"mode": "crash"}, ("tasks failed", "exited while booting")),
    # seen running first, then gone: told at once (not after the boot timeout), with its exit
    ("exits after a while at boot", {"mode": "latecrash"}, "exited while booting"),
    ("has no command", {"files": NO_COMMAND}, "the image has no command to run"),
    (
        "release command fails",
        {"procfile": "release: sh -c 'echo nope; exit 4'\nweb: python app.py\n"},
        "exit 4",
    ),
]


def test_bad_releases_are_refused_with_a_reason_and_the_old_one_serves_every_request(
    repo, tenant, berth_platform
):
    from berth.releases.models import Release

    app = tenant.app
    host = f"{app.name}.localhost"
    push_ok(repo, "stable")
    with Load(berth_platform.router_port, host, max_seconds=300) as load:
        for version, (what, kwargs, words) in enumerate(BAD, start=2):
            started = time.monotonic()
            result = push(repo, what, **kwargs)
            said = f"{what}:\n{result.stderr}"  # a string, shown whole (pytest cut a tuple's repr short)
            assert result.returncode != 0, said
            assert "previous release keeps serving" in result.stderr, said
            either = (words,) if isinstance(words, str) else words
            assert any(word in result.stderr for word in either), said
            release = Release.objects.get(app=app, version=version)
            assert release.status == "failed", what
            assert any(word in release.status_reason for word in either), (what, release.status_reason)
            assert time.monotonic() - started < BOOT_TIMEOUT + 45, what
            assert body_of(berth_platform.router_port, host) == "stable", what
            assert [s.release for s in web_services(app.name)] == [1], what  # the new services are gone
            # the rejected commit did not land
            repo_head = git(repo, "ls-remote", "berth", "refs/heads/main").stdout.split()
            assert repo_head and repo_head[0] != git(repo, "rev-parse", "HEAD").stdout.strip()
            git(repo, "reset", "-q", "--hard", "HEAD~1")
    assert load.failed == 0, (load.failed, load.ok, load.errors[:5])
    assert load.ok > 100
    assert load.bodies == {"stable"}
    assert Release.objects.get(app=app, version=1).status == "live"
    failed = [e for e in events(app.name) if e["kind"] == "release.failed"]
    assert len(failed) == len(BAD)
    # the crashing app's own last lines are kept with its reason
    assert "booting crashes at boot crash" in Release.objects.get(app=app, version=4).status_reason
    assert (
        "booting exits after a while at boot latecrash"
        in Release.objects.get(app=app, version=5).status_reason
    )


def test_a_release_command_runs_once_before_the_cut_over(repo, tenant, berth_platform):
    host = f"{tenant.app.name}.localhost"
    push_ok(repo, "v1")
    procfile = (
        "release: python -c \"print('MIGRATED', 6 * 7)\"\nweb: python app.py\n"
        "worker: python -c 'import time; time.sleep(3600)'\n"
    )
    with Load(berth_platform.router_port, host, max_seconds=120) as load:
        result = push_ok(repo, "v2", procfile=procfile)
    output = result.stderr
    assert output.count("MIGRATED 42") == 1, output
    assert output.index("MIGRATED 42") < output.index("switching traffic to v2"), output
    # a new process type other than web starts at 0, as on Heroku, and the output says how to run it
    assert "Starting worker × 0 (run it with: berth ps:scale worker=1)" in output, output
    assert load.failed == 0, (load.failed, load.errors[:5])
    assert body_of(berth_platform.router_port, host) == "v2"


def test_a_failed_first_deploy_does_not_promise_a_previous_release(repo, tenant, berth_platform):
    result = push(repo, "first", mode="crash")
    assert result.returncode != 0
    assert "the app has no live release yet" in result.stderr, result.stderr[-1500:]
    assert "previous release" not in result.stderr
