"""A job's run against the real Docker engine: a one-off in the live release (its image and config), its output
in the app's log as scheduler[scheduler.N] lines as `berth logs` prints them, its exit status and duration."""

import secrets
import time
from datetime import timedelta

import pytest
from berth.cli.logs import log_text
from berth.core.redis import redis_client
from berth.jobs.models import CronRunStatus
from berth.jobs.services import cron_job_add, cron_run_execute, cron_tick
from berth.observe.replay import log_message
from berth.observe.services import app_streams_delete, as_text, logs_key
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create
from berth.runtime.swarm import team_network_remove
from django.utils import timezone

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

IMAGE = "berth/stack:bookworm"


@pytest.fixture
def live_app(make_app, make_team):
    team = make_team(f"cronteam{secrets.token_hex(3)}")
    app = make_app(f"cron-{secrets.token_hex(3)}", team=team)
    release = release_create(
        app=app,
        image=IMAGE,
        procfile={"web": "true"},
        description="test",
        actor=None,
        config={"BERTH_CRON_TEST": "the-live-config"},
    )
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.LIVE)
    yield app
    app_streams_delete(app=app.name)
    team_network_remove(team=team.name)


def printed(app_name: str) -> list[str]:
    """The app's log as `berth logs` prints it (ts cut off)."""
    entries = redis_client().xrange(logs_key(app_name))
    texts = [
        log_text(log_message(as_text(i), {as_text(k): as_text(v) for k, v in f.items()})) for i, f in entries
    ]
    return [text.split(" ", 1)[1] for text in texts if text]


def test_a_due_job_runs_in_the_live_release_and_its_output_reaches_the_logs(live_app):
    job = cron_job_add(
        app=live_app, schedule="* * * * *", command="echo hello from $BERTH_CRON_TEST; echo oops >&2; exit 3"
    )
    [run_id] = cron_tick(now=job.next_run_at)
    started = time.monotonic()
    run = cron_run_execute(run_id=run_id)
    assert time.monotonic() - started < 60
    assert run.status == CronRunStatus.FAILED and run.exit_code == 3 and run.release == 1
    assert run.duration_seconds is not None and 0 < run.duration_seconds < 60
    lines = printed(live_app.name)
    tag = f"scheduler.{run_id}"
    assert f"berth[{tag}]: Starting job #{job.pk} in v1: {job.command}" in lines
    assert f"scheduler[{tag}]: hello from the-live-config" in lines
    assert f"scheduler[{tag}]: oops" in lines
    assert any(line.startswith(f"berth[{tag}]: Job #{job.pk} exited with status 3 after ") for line in lines)
    # a second delivery of the same task finds the run taken and does nothing
    assert cron_run_execute(run_id=run_id).status == CronRunStatus.FAILED
    assert len(printed(live_app.name)) == len(lines)


def test_the_api_shows_the_last_run(live_app, token_client):
    job = cron_job_add(app=live_app, schedule="* * * * *", command="sleep 1; echo done")
    [run_id] = cron_tick(now=job.next_run_at)
    cron_run_execute(run_id=run_id)
    owner = live_app.team.memberships.get().user
    [listed] = token_client(owner).get(f"/api/v1/apps/{live_app.name}/cron").json()
    last = listed["last_run"]
    assert last["id"] == run_id and last["status"] == "succeeded" and last["exit_code"] == 0
    assert 1 <= last["duration_seconds"] < 30 and last["finished_at"].endswith("Z")
    assert last["instance"] == f"scheduler.{run_id}"


def test_an_app_without_a_live_release_fails_the_run_saying_so(make_app):
    app = make_app(f"cron-{secrets.token_hex(3)}")
    job = cron_job_add(
        app=app, schedule="* * * * *", command="true", now=timezone.now() - timedelta(minutes=2)
    )
    [run_id] = cron_tick()
    run = cron_run_execute(run_id=run_id)
    assert run.status == CronRunStatus.FAILED and "no live release" in run.reason
    assert any("no live release" in line for line in printed(app.name))
    app_streams_delete(app=app.name)
    assert job.runs.count() == 1


def test_the_shipper_leaves_a_runs_container_to_the_run(live_app):
    """The run writes its own lines (scheduler.N); the log shipper, which follows every container of an app, must
    not log them a second time as run.*: it reads the labels of the very container the run starts."""
    import threading

    from berth.observe.shipper import target_from_labels
    from berth.runtime.client import docker_client
    from berth.runtime.scheduler import LABEL_APP

    job = cron_job_add(app=live_app, schedule="* * * * *", command="sleep 4; echo done")
    [run_id] = cron_tick(now=job.next_run_at)
    runner = threading.Thread(target=cron_run_execute, kwargs={"run_id": run_id})
    runner.start()
    try:
        deadline, containers = time.monotonic() + 30, []
        while not containers and time.monotonic() < deadline:
            containers = docker_client().containers.list(filters={"label": f"org.berth.cron.job={job.pk}"})
            time.sleep(0.2)
        [container] = containers
        assert container.labels[LABEL_APP] == live_app.name
        assert target_from_labels(container.id, container.labels, container.name) is None
    finally:
        runner.join(timeout=60)
    assert f"scheduler[scheduler.{run_id}]: done" in printed(live_app.name)
