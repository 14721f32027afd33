"""What the pusher reads of a build: Berth's steps and the tools' lines, not the engine's bookkeeping (no Docker;
the log stream test uses Redis)."""

import uuid

import redis
from berth.builds.builder import BuildOutputFilter, _failure
from berth.builds.logstream import LogStream
from berth.runtime.build import BuildRun
from django.conf import settings

# A python build as the legacy builder prints it (shortened from a real one).
ENGINE_LINES = [
    "Step 1/21 : FROM berth/stack:trixie AS deps",
    " ---> 0a1b2c3d4e5f",
    "Step 8/21 : RUN berth-python install",
    " ---> Running in 64899a522053",
    "-----> Installing dependencies with uv",
    "       Resolved 18 packages in 2ms",
    "       Installed 16 packages in 31ms",
    "Removing intermediate container 64899a522053",
    " ---> 36bc72de6ffc",
    "Step 9/21 : COPY app/ /app/",
    " ---> Using cache",
    " ---> a1ea44316d51",
    "-----> Running collectstatic",
    "       1 static file copied to '/app/staticfiles'.",
    "Successfully built ae306e4b38fd",
    "Successfully tagged t-e2e-abc/web:1",
]


def _split(lines, *, steps_are_noise=True):
    shown, detail = [], []
    output = BuildOutputFilter(shown.append, detail.append, steps_are_noise=steps_are_noise)
    for line in lines:
        output(line)
    return shown, detail, output


def test_the_pusher_reads_berths_steps_and_the_tools_lines_only():
    shown, detail, _ = _split(ENGINE_LINES)
    assert shown == [
        "-----> Installing dependencies with uv",
        "       Resolved 18 packages in 2ms",
        "       Installed 16 packages in 31ms",
        "-----> Running collectstatic",
        "       1 static file copied to '/app/staticfiles'.",
    ]
    # nothing is lost: the rest goes to the full log
    assert sorted(shown + detail) == sorted(ENGINE_LINES)


def test_the_repositorys_own_dockerfile_keeps_its_step_lines():
    shown, _, _ = _split(ENGINE_LINES, steps_are_noise=False)
    assert "Step 8/21 : RUN berth-python install" in shown
    assert " ---> Running in 64899a522053" not in shown


def test_without_a_detail_sink_every_line_is_shown_as_before():
    shown = []
    output = BuildOutputFilter(shown.append, None, steps_are_noise=True)
    for line in ENGINE_LINES:
        output(line)
    assert shown == ENGINE_LINES


def test_a_failed_buildpack_script_step_is_named_by_berths_step():
    _, _, output = _split(ENGINE_LINES[:8])
    run = BuildRun(
        step=("8", "21", "RUN berth-python install"),
        error="The command '/bin/sh -c berth-python install' returned a non-zero code: 1",
    )
    assert _failure(run, output.last_step) == (
        "error: Installing dependencies with uv failed (exit code 1); its output is above"
    )


def test_a_failed_step_of_the_apps_own_dockerfile_keeps_the_dockerfile_wording():
    run = BuildRun(
        step=("3", "5", "RUN make"), error="The command '/bin/sh -c make' returned a non-zero code: 2"
    )
    assert (
        _failure(run, "Building image x")
        == "error: the Dockerfile's step 3 failed: RUN make returned a non-zero code: 2"
    )


def test_detail_lines_stay_in_the_full_log_but_the_pushers_follow_skips_them():
    client = redis.Redis.from_url(settings.REDIS_URL)
    stream = LogStream(client, f"berth-test:buildlog:{uuid.uuid4().hex}")
    try:
        stream.append("-----> Installing dependencies with pip")
        stream.append("Removing intermediate container 64899a522053", detail=True)
        stream.append("       Successfully installed flask-3.1.0")
        stream.close("succeeded")
        followed = [line for _, line in stream.follow(timeout=5)]
        assert followed == [
            "-----> Installing dependencies with pip",
            "       Successfully installed flask-3.1.0",
        ]
        assert stream.read_all() == [
            "-----> Installing dependencies with pip",
            "Removing intermediate container 64899a522053",
            "       Successfully installed flask-3.1.0",
        ]
    finally:
        client.delete(stream.key)
        client.close()
