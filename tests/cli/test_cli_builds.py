"""`berth` builds, deploys, rollbacks and processes end to end: the installed script against a real live server.

There is no Celery worker here, so a build or a rollback stays where the API left it; the test then plays the
worker's part through the same services and the build's Redis log stream, while `berth` follows it.
"""

import io
import json
import os
import random
import secrets
import subprocess
import time

import docker.errors
import httpx
import pytest
from berth.apps.models import App
from berth.builds import services as builds
from berth.builds.models import Build, build_cache_ref, build_run_ref
from berth.builds.stack import stack_image_ref
from berth.releases.models import Release
from berth.releases.services import release_create, release_set_status
from berth.runtime.build import image_tag
from berth.runtime.client import docker_client

from tests.cli.conftest import Background, as_json, assert_one_error_line, ok
from tests.conftest import NO_TLS, REPO_DIR, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def build_streams(transactional_db):
    """Build logs live in Redis streams keyed by build id, and Redis db 15 is shared with other test runs: builds
    here get ids far from theirs, and their streams are deleted afterwards."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [Build._meta.db_table, random.randrange(10**9, 2 * 10**9)],
            )
    yield
    keys = [build.stream_key for build in Build.objects.all()]
    if keys:
        builds.redis_client().delete(*keys)


def make_build(app_name: str, **fields) -> Build:
    values = {"source": Build.Source.IMAGE, "image_ref": "registry.test/shop:1"} | fields
    build = Build.objects.create(app=App.objects.get(name=app_name), **values)
    # as builds.build_create does: on SQLite a rolled-back test's build id comes again, and Redis still holds the
    # stream an earlier test's build of that id wrote (this test then read "Python app detected" as its first line)
    builds.log_stream(build).redis.delete(build.stream_key)
    return build


def finish_build(build: Build, *, status: str, lines: list[str], reason: str = "", **fields) -> None:
    """What the worker does at the end of a build: move the row (conditionally), then close the stream."""
    stream = builds.log_stream(build)
    for line in lines:
        stream.append(line)
    assert builds.build_transition(
        build=build, from_statuses=["queued", "building"], to_status=status, reason=reason, **fields
    )
    stream.close(status)
    Build.objects.filter(pk=build.pk).update(log="\n".join(stream.read_all()))


def only_build(app_name: str) -> Build:
    return wait_for(
        lambda: Build.objects.filter(app__name=app_name).first(), timeout=30, message="the deploy's build"
    )


# --- builds, builds:info, builds:output, builds:cancel ------------------------------------------------------


def test_builds_lists_them_newest_first_and_info_shows_fields_and_log(cli, shop):
    first = make_build(
        shop, status="failed", status_reason="error: manifest unknown", log="-----> Pulling\nnope"
    )
    second = make_build(
        shop, source=Build.Source.GIT, image_ref="", git_ref="refs/heads/main", git_sha="a" * 40
    )
    lines = ok(cli("builds", "-a", shop)).splitlines()
    assert lines[0].split() == ["ID", "STATUS", "SOURCE", "RELEASE", "BY", "CREATED"]
    assert lines[2].split()[:5] == [str(second.pk), "queued", "refs/heads/main", "aaaaaaa", "-"]
    assert lines[3].split()[:4] == [str(first.pk), "failed", "registry.test/shop:1", "-"]
    assert [b["id"] for b in as_json(cli("builds", "-a", shop, "--json"))] == [second.pk, first.pk]

    info = ok(cli("builds:info", str(first.pk), "-a", shop))
    assert info.startswith(f"=== shop build {first.pk}\n")
    assert "error: manifest unknown" in info and "image registry.test/shop:1" in info
    assert info.endswith("=== log\n-----> Pulling\nnope\n")
    assert as_json(cli("builds:info", str(first.pk), "-a", shop, "--json"))["log"] == "-----> Pulling\nnope"
    assert_one_error_line(cli("builds:info", "999", "-a", shop), contains="shop has no build 999")


def test_a_build_that_just_finished_shows_its_lines_before_its_log_is_saved(cli, shop):
    """The worker moves the row to failed a moment before it saves the log on it: `berth deploy` asking then must
    still print the lines (a full run once printed only "[build N failed]")."""
    build = make_build(shop, status="building")
    builds.log_stream(build).append("-----> Pulling registry.test/shop:1")
    builds.log_stream(build).append("error: manifest unknown")
    assert builds.build_transition(
        build=build, from_statuses=["building"], to_status="failed", reason="error: manifest unknown"
    )
    assert Build.objects.get(pk=build.pk).log == ""  # not saved yet
    output = cli("builds:output", str(build.pk), "-a", shop)
    assert output.stdout.splitlines() == [
        "-----> Pulling registry.test/shop:1",
        "error: manifest unknown",
        f"[build {build.pk} failed]",
    ]
    assert as_json(cli("builds:info", str(build.pk), "-a", shop, "--json"))["log"].endswith(
        "manifest unknown"
    )


def test_an_app_without_builds_says_so(cli, shop):
    assert ok(cli("builds", "-a", shop)) == "shop has no builds yet.\n"


def test_builds_output_prints_lines_as_they_arrive_until_the_build_ends(cli, shop, home):
    build = make_build(shop, status="building")
    builds.log_stream(build).append("-----> Pulling registry.test/shop:1")
    follower = Background("builds:output", str(build.pk), "-a", shop, home=home)
    # the first line is printed while the build still runs: followed live, not collected at the end
    assert follower.line() == "-----> Pulling registry.test/shop:1\n"
    assert follower.process.poll() is None
    finish_build(build, status="succeeded", lines=["-----> Done"])
    result = follower.finish()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "-----> Pulling registry.test/shop:1",
        "-----> Done",
        f"[build {build.pk} succeeded]",
    ]
    # once finished, the kept log is printed at once
    assert ok(cli("builds:output", str(build.pk), "-a", shop)).splitlines()[-2:] == [
        "-----> Done",
        f"[build {build.pk} succeeded]",
    ]


def test_builds_output_of_a_failed_build_exits_1_with_its_reason(cli, shop):
    build = make_build(shop, status="building")
    finish_build(build, status="failed", lines=["error: boom"], reason="error: boom")
    result = cli("builds:output", str(build.pk), "-a", shop)
    assert_one_error_line(result, contains=f"error: build {build.pk} failed: boom")
    assert result.stdout.splitlines() == ["error: boom", f"[build {build.pk} failed]"]
    assert_one_error_line(cli("builds:output", "999", "-a", shop), contains="shop has no build 999")


def test_builds_cancel_cancels_a_queued_build_and_refuses_a_finished_one(cli, shop):
    build = make_build(shop)
    assert ok(cli("builds:cancel", str(build.pk), "-a", shop)) == f"Cancelled build {build.pk} of shop\n"
    build.refresh_from_db()
    assert build.status == "cancelled"
    assert builds.log_stream(build).status() == "cancelled"
    assert_one_error_line(cli("builds:cancel", str(build.pk), "-a", shop), contains="already cancelled")


@pytest.fixture
def asgi_web(transactional_db, settings, tmp_path):
    """The web process as production runs it (gunicorn + uvicorn, ASGI) on this test's database; stopped by PID."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("a second process shares the test database: PostgreSQL only")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BERTH_HOME": str(settings.BERTH_HOME),
        "PYTHONPATH": str(REPO_DIR / "platform"),
    }
    command = [str(REPO_DIR / ".venv/bin/gunicorn"), "berth.config.asgi:application"]
    command += ["-k", "uvicorn.workers.UvicornWorker", "-w", "1", "--timeout", "0", "-b", f"127.0.0.1:{port}"]
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{url}/healthz", timeout=2, verify=NO_TLS).status_code in (200, 503)
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=30, message="gunicorn")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_builds_output_is_live_from_the_production_web_server_too(shop, home, asgi_web):
    # the login made on the live server (it hashes passwords its own fast way) is good on gunicorn too
    token = json.loads((home / ".config/berth/credentials.json").read_text())["token"]
    build = make_build(shop, status="building")
    builds.log_stream(build).append("-----> Pulling registry.test/shop:1")
    env = {"BERTH_URL": asgi_web, "BERTH_TOKEN": token}
    follower = Background("builds:output", str(build.pk), "-a", shop, home=home, env=env)
    try:
        assert follower.line(timeout=10) == "-----> Pulling registry.test/shop:1\n"
    finally:
        # ends the stream either way, so neither the server nor `berth` is left waiting
        finish_build(build, status="succeeded", lines=["-----> Done"])
        result = follower.finish()
    assert result.stdout.splitlines()[-1] == f"[build {build.pk} succeeded]"


# --- deploy --image -----------------------------------------------------------------------------------------


def test_deploy_with_a_malformed_image_reference_is_one_error_line(cli, shop):
    result = cli("deploy", "--image", "Not An/Image!", "-a", shop)
    assert_one_error_line(result, contains="not a valid image reference")
    assert result.stdout == ""
    assert not Build.objects.exists()


def test_deploy_queues_a_build_and_follows_it_until_cancelled(cli, shop, home):
    deploying = Background("deploy", "--image", "registry.test/shop:1", "-a", shop, home=home)
    build = only_build(shop)
    assert deploying.line() == f"Deploying registry.test/shop:1 to shop (build {build.pk})\n"
    # one build at a time per app
    assert_one_error_line(
        cli("deploy", "--image", "registry.test/shop:2", "-a", shop),
        contains=f"build {build.pk} of shop is still",
    )
    assert ok(cli("builds:cancel", str(build.pk), "-a", shop)) == f"Cancelled build {build.pk} of shop\n"
    result = deploying.finish()
    assert assert_one_error_line(result) == f"error: build {build.pk} cancelled"
    assert result.stdout.splitlines()[-2:] == ["error: build cancelled", f"[build {build.pk} cancelled]"]


def test_deploy_exits_0_when_its_build_succeeds(cli, shop, home, ada):
    deploying = Background("deploy", "--image", "registry.test/shop:1", "-a", shop, home=home)
    build = only_build(shop)
    assert deploying.line().startswith("Deploying registry.test/shop:1")
    builds.build_transition(build=build, from_statuses=["queued"], to_status="building")
    builds.log_stream(build).append("-----> Pulling registry.test/shop:1")
    assert deploying.line() == "-----> Pulling registry.test/shop:1\n"
    release = release_create(
        app=build.app, image="registry.test/shop:1", procfile={}, description="", actor=ada, status="live"
    )
    finish_build(build, status="succeeded", lines=["-----> v1 is live"], release=release, image=release.image)
    result = deploying.finish()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-3:] == [
        "-----> v1 is live",
        f"[build {build.pk} succeeded]",
        "Deployed shop v1",
    ]


def test_deploy_exits_1_with_the_reason_when_its_build_fails(cli, shop, home):
    deploying = Background("deploy", "--image", "registry.test/shop:1", "-a", shop, home=home)
    build = only_build(shop)
    reason = "error: pulling registry.test/shop:1 failed: manifest unknown"
    finish_build(build, status="failed", lines=["-----> Pulling registry.test/shop:1", reason], reason=reason)
    result = deploying.finish()
    line = assert_one_error_line(result)
    assert line == f"error: build {build.pk} failed: pulling registry.test/shop:1 failed: manifest unknown"
    assert result.stdout.splitlines()[-2:] == [reason, f"[build {build.pk} failed]"]


def test_deploy_json_prints_only_the_finished_build(cli, shop, home, ada):
    deploying = Background("deploy", "--image", "registry.test/shop:1", "-a", shop, "--json", home=home)
    build = only_build(shop)
    finish_build(build, status="succeeded", lines=["-----> Pulling"], image="registry.test/shop:1")
    result = deploying.finish()
    assert result.returncode == 0, result.stderr
    assert as_json(result)["status"] == "succeeded"


# --- rollback -----------------------------------------------------------------------------------------------


@pytest.fixture
def v1(shop, ada):
    return release_create(
        app=App.objects.get(name=shop),
        image="registry.test/shop:1",
        procfile={"web": "serve"},
        description="Deploy registry.test/shop:1",
        actor=ada,
        status="live",
    )


def test_rollback_to_an_unknown_version_is_one_error_line(cli, v1):
    assert_one_error_line(cli("rollback", "v9", "-a", "shop"), contains="shop has no release v9")
    assert_one_error_line(cli("rollback", "latest", "-a", "shop"), code=2, contains="'latest'")


def test_rollback_no_wait_makes_the_release_and_returns(cli, v1):
    out = ok(cli("rollback", "v1", "--no-wait", "-a", "shop"))
    assert out.startswith("Rolled back shop to v1 as v2 (pending)")
    assert as_json(cli("rollback", "1", "--no-wait", "-a", "shop", "--json"))["version"] == 3
    newest = Release.objects.filter(app__name="shop").order_by("-version").first()
    assert (newest.version, newest.image, newest.description) == (3, "registry.test/shop:1", "Rollback to v1")


@pytest.mark.parametrize(("outcome", "code"), [("live", 0), ("failed", 1)])
def test_rollback_waits_for_the_release_to_go_live_or_fail(cli, v1, home, outcome, code):
    rolling = Background("rollback", "v1", "--timeout", "30", "-a", "shop", home=home)
    assert rolling.line() == "Rolled back shop to v1 as v2; waiting for it to go live...\n"
    release = Release.objects.get(app__name="shop", version=2)
    assert rolling.process.poll() is None
    release_set_status(release=release, from_statuses=["pending"], to_status=outcome)
    result = rolling.finish()
    assert result.returncode == code, result.stderr
    if outcome == "live":
        assert result.stdout.splitlines()[-1] == "v2 is live"
    else:
        assert_one_error_line(result, contains="v2 did not go live (status failed)")


def test_rollback_gives_up_waiting_after_its_timeout(cli, v1):
    result = cli("rollback", "v1", "--timeout", "1", "-a", "shop")
    assert_one_error_line(result, contains="v2 is still pending after 1 s")


# --- ps -----------------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_ps_of_an_app_with_nothing_running(cli, shop):
    assert ok(cli("ps", "-a", shop)) == "shop has no processes running.\n"
    assert as_json(cli("ps", "-a", shop, "--json")) == []


@pytest.mark.docker
def test_ps_shows_each_process_types_replicas_and_placement(cli, shop):
    from berth.apps.models import Formation

    ok(cli("ps:scale", "web=2", "-a", shop))
    # what `berth ps:place -a shop web zone=a disk=ssd` stores (it needs a swarm node with those labels)
    Formation.objects.filter(app__name=shop, process="web").update(
        constraints=["node.labels.zone==a", "node.labels.disk==ssd"]
    )
    assert ok(cli("ps", "-a", shop)) == (
        "web: 2 replicas, placed on zone=a disk=ssd\n\nshop has no processes running.\n"
    )
    assert as_json(cli("ps", "-a", shop, "--json")) == []  # the tasks, as before

    Formation.objects.filter(app__name=shop, process="web").update(constraints=[], replicas=1)
    assert ok(cli("ps", "-a", shop)).splitlines()[0] == "web: 1 replica, on any node"


# --- run, runs:output ---------------------------------------------------------------------------------------

RUN_PREFIX = "clirun-"


def remove_runs(prefix: str, *, older_than: float = 0) -> None:
    """Remove the one-off containers of apps named `prefix`… and their teams' overlay networks (runs leave both)."""
    from berth.runtime.client import docker_client
    from berth.runtime.scheduler import LABEL_APP, LABEL_ONEOFF, LABEL_TEAM

    client = docker_client()
    cutoff = time.time() - older_than
    for container in client.api.containers(all=True, filters={"label": [f"{LABEL_ONEOFF}=1"]}):
        if container["Labels"].get(LABEL_APP, "").startswith(prefix) and container["Created"] <= cutoff:
            client.api.remove_container(container["Id"], force=True)
    for network in client.api.networks(filters={"label": [LABEL_TEAM]}):
        if network["Labels"].get(LABEL_TEAM, "").startswith(prefix):
            try:
                client.api.remove_network(network["Id"])
            except docker.errors.APIError:
                pass  # still in use by a run of another test session: that session removes it


@pytest.fixture
def runnable(cli, ada):
    """An app whose live release is the stack image, in a team of its own (so its overlay network is ours)."""
    remove_runs(RUN_PREFIX, older_than=600)  # what a killed session of these tests left behind
    name = f"{RUN_PREFIX}{secrets.token_hex(3)}"
    ok(cli("teams:create", name))
    ok(cli("apps:create", name, "--team", name))
    ok(cli("config:set", "GREETING=hello from config", "-a", name))
    release_create(
        app=App.objects.get(name=name),
        image="berth/stack:bookworm",
        procfile={},
        description="",
        actor=ada,
        status="live",
    )
    yield name
    remove_runs(name)


def test_run_without_a_live_release_is_one_error_line(cli, shop):
    assert_one_error_line(cli("run", "-a", shop, "--", "true"), contains="shop has no live release")
    assert_one_error_line(cli("run", "-a", shop), code=2, contains="no command given")


@pytest.mark.docker
def test_run_prints_the_output_and_exits_with_the_commands_code(cli, runnable):
    result = cli("run", "-a", runnable, "--", "sh", "-c", 'echo "$GREETING"; echo to stderr >&2; exit 3')
    assert (result.returncode, result.stderr) == (3, "")
    assert sorted(result.stdout.splitlines()) == ["hello from config", "to stderr"]
    # one word is a shell command line: pipes and expansions happen in the container
    assert ok(cli("run", "-a", runnable, "--", "echo $((40 + 2)) | tr 4 X")) == "X2\n"
    data = as_json(cli("run", "-a", runnable, "--json", "--", "echo", "a  b"))
    assert (data["status"], data["exit_code"], data["output"]) == ("exited", 0, ["a  b"])


@pytest.mark.docker
def test_run_detach_prints_the_id_and_runs_output_follows_it(cli, runnable):
    out = ok(cli("run", "--detach", "-a", runnable, "--", "sleep 1; echo done; exit 4"))
    first, second = out.splitlines()
    run_id = first.split()[2].rstrip(":")
    assert first == f"Started run {run_id} of {runnable} v2: sleep 1; echo done; exit 4"
    assert second == f"Read its output with: berth runs:output {run_id} -a {runnable}"
    result = cli("runs:output", run_id, "-a", runnable)
    assert (result.returncode, result.stdout, result.stderr) == (4, "done\n", "")
    assert_one_error_line(cli("runs:output", "0123456789ab", "-a", runnable), contains="no run 0123456789ab")


def test_rollback_without_a_version_picks_the_release_before_the_live_one(cli, shop, ada, v1):
    assert_one_error_line(cli("rollback", "-a", "shop"), contains="no release before v1")
    Release.objects.filter(pk=v1.pk).update(status="superseded")
    release_create(
        app=App.objects.get(name=shop),
        image="registry.test/shop:2",
        procfile={"web": "serve"},
        description="v2",
        actor=ada,
        status="live",
    )
    out = ok(cli("rollback", "--no-wait", "-a", "shop"))
    assert out.startswith("Rolled back shop to v1 as v3"), out


def test_restart_is_ps_restart_and_unsetting_a_missing_key_says_so(cli, shop):
    restart, ps_restart = cli("restart", "-a", "shop"), cli("ps:restart", "-a", "shop")
    assert (restart.returncode, restart.stdout, restart.stderr) == (
        ps_restart.returncode,
        ps_restart.stdout,
        ps_restart.stderr,
    )
    assert "unknown command" not in restart.stderr
    ok(cli("config:set", "A=1", "-a", "shop"))
    out = ok(cli("config:unset", "A", "NOPE", "-a", "shop"))
    assert out.splitlines() == ["Unset A on shop", "NOPE was not set on shop"]


def test_rollback_without_a_version_right_after_a_change_undoes_that_change(cli, shop, ada, v1):
    Release.objects.filter(pk=v1.pk).update(status="superseded")
    for version, status in ((2, "live"), (3, "deploying")):  # v3: a config change still rolling out
        release_create(
            app=App.objects.get(name=shop),
            image="registry.test/shop:2",
            procfile={"web": "serve"},
            description=f"v{version}",
            actor=ada,
            status=status,
        )
    out = ok(cli("rollback", "--no-wait", "-a", "shop"))
    assert out.startswith("Rolled back shop to v2 as v4"), out


def test_builds_cache_clear_drops_the_apps_dependency_cache(cli, shop):
    ref, run_ref = build_cache_ref(app_name=shop), build_run_ref(app_name=shop)
    assert ok(cli("builds:cache:clear", "-a", shop)) == f"{shop} has no build cache\n"
    # an image of its own, on the stack: the stack itself tagged berth/<app> would, for that while, be "another
    # team's image" to every other test's build on this engine (their FROM of the stack refused)
    dockerfile = f"FROM {stack_image_ref()}\nLABEL org.berth.test.cache-clear={shop}\n"
    cache, _ = docker_client().images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True, pull=False)
    image_tag(cache.id, ref)
    image_tag(cache.id, run_ref)
    try:
        assert ok(cli("builds:cache:clear", "-a", shop)) == f"Cleared the build cache of {shop}\n"
        for each in (ref, run_ref):  # its run cache too
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client().images.get(each)
    finally:
        for each in (ref, run_ref, cache.id):
            try:
                docker_client().images.remove(each)
            except docker.errors.ImageNotFound:
                pass
