"""One-off runs (release phase, `berth run`) against the real Docker engine."""

import time

import pytest
from berth.runtime.client import docker_client
from berth.runtime.oneoff import oneoff_logs, oneoff_prune, oneoff_remove, oneoff_wait, run_oneoff
from berth.runtime.scheduler import SchedulerError

from tests.runtime import test_scheduler
from tests.runtime.test_scheduler import IMAGE, TEST_LABELS, unique

pytestmark = pytest.mark.docker

# the scheduler module's fixtures: cleanup of labelled leftovers, and an image with a CMD
clean_swarm = test_scheduler.clean_swarm
cmd_image = test_scheduler.cmd_image


@pytest.fixture(scope="module")
def team():
    return unique("ts")


def run(team: str, command: str, **kwargs):
    values = {"app": unique(), "team": team, "release": 3, "image": IMAGE, "env": {}, "labels": TEST_LABELS}
    values.update(kwargs)
    return run_oneoff(command=command, **values)


def test_exit_code_is_returned(team):
    assert run(team, "true").exit_code == 0
    assert run(team, "exit 3").exit_code == 3


def test_output_is_streamed_while_it_runs(team):
    seen = []
    result = run(
        team,
        "echo one; sleep 2; echo two >&2; printf 'no newline'",
        on_line=lambda line: seen.append((time.monotonic(), line)),
    )
    assert result.exit_code == 0
    assert [line for _, line in seen] == ["one", "two", "no newline"]
    assert seen[1][0] - seen[0][0] > 1.5  # "one" came before the run ended, not all at once


def test_env_is_passed_and_the_container_is_removed(team):
    lines = []
    result = run(team, 'echo "$GREETING from $HOSTNAME"', env={"GREETING": "hi"}, on_line=lines.append)
    assert result.exit_code == 0 and lines[0].startswith("hi from ")
    assert docker_client().api.containers(all=True, filters={"id": result.container_id}) == []


def test_no_command_runs_the_image_cmd(team, cmd_image):
    lines = []
    result = run(team, None, image=cmd_image, env={"GREETING": "hi"}, on_line=lines.append)
    assert result.exit_code == 0 and lines == ["from-cmd hi"]


def test_timeout_kills_the_run(team):
    started = time.monotonic()
    result = run(team, "echo started; sleep 60", timeout=2)
    assert result.timed_out and result.exit_code == 137
    assert time.monotonic() - started < 15


def test_detached_run_keeps_going_and_its_logs_are_readable(team):
    result = run(team, "echo first; sleep 1; echo second", detach=True, app="t-detached")
    try:
        assert result.exit_code is None
        assert oneoff_wait(result.container_id, timeout=30) == 0
        assert oneoff_logs(result.container_id) == ["first", "second"]
        labels = docker_client().api.inspect_container(result.container_id)["Config"]["Labels"]
        assert labels["org.berth.app"] == "t-detached" and labels["org.berth.oneoff"] == "1"
        assert labels["org.berth.release"] == "3"
    finally:
        oneoff_remove(result.container_id)
    with pytest.raises(SchedulerError):
        oneoff_logs(result.container_id)


def test_prune_removes_old_runs_of_the_app(team):
    app = unique()
    result = run(team, "sleep 600", detach=True, app=app)
    try:
        assert oneoff_prune(older_than=3600, app=app) == []
        assert oneoff_prune(older_than=0, app=app) == [result.container_id]
        assert docker_client().api.containers(all=True, filters={"id": result.container_id}) == []
    finally:
        oneoff_remove(result.container_id)
