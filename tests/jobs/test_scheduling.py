"""The clock (cron_tick) with a settable `now`: one run per due time, missed runs run once, no overlap unless
allowed, two ticks at once start one run; the API's answers."""

from datetime import UTC, datetime, timedelta

import pytest
from berth.audit.models import AuditEvent
from berth.jobs.models import CronRun, CronRunStatus
from berth.jobs.services import cron_job_add, cron_runs_sweep, cron_tick

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 4, 20, 7, 30, tzinfo=UTC)


def test_a_job_is_first_due_at_its_next_fire_time(make_app):
    job = cron_job_add(app=make_app(), schedule="*/15 * * * *", command="true", now=T0)
    assert job.next_run_at == datetime(2026, 12, 4, 20, 15, tzinfo=UTC)
    assert cron_tick(now=T0 + timedelta(minutes=5)) == []
    [run_id] = cron_tick(now=job.next_run_at)
    run = CronRun.objects.get(pk=run_id)
    assert run.status == CronRunStatus.QUEUED and run.due_at == job.next_run_at
    job.refresh_from_db()
    assert job.next_run_at == datetime(2026, 12, 4, 20, 30, tzinfo=UTC)


def test_a_scheduler_down_for_hours_runs_a_missed_job_once(make_app):
    job = cron_job_add(app=make_app(), schedule="*/15 * * * *", command="true", now=T0)
    back = T0 + timedelta(hours=3, minutes=1)  # twelve fire times were missed
    assert len(cron_tick(now=back)) == 1
    assert cron_tick(now=back + timedelta(seconds=15)) == []
    job.refresh_from_db()
    assert job.next_run_at == datetime(
        2026, 12, 4, 23, 15, tzinfo=UTC
    )  # the next one after now, not a backlog
    assert job.runs.count() == 1


def test_a_run_still_going_makes_the_next_one_skipped(make_app):
    job = cron_job_add(app=make_app(), schedule="* * * * *", command="sleep 600", now=T0)
    [first] = cron_tick(now=T0 + timedelta(minutes=1))
    CronRun.objects.filter(pk=first).update(status=CronRunStatus.RUNNING)
    assert cron_tick(now=T0 + timedelta(minutes=2)) == []
    skipped = job.runs.exclude(pk=first).get()
    assert skipped.status == CronRunStatus.SKIPPED and f"run {first} was still running" in skipped.reason
    CronRun.objects.filter(pk=first).update(status=CronRunStatus.SUCCEEDED)
    assert len(cron_tick(now=T0 + timedelta(minutes=3))) == 1


def test_allow_overlap_starts_runs_beside_each_other(make_app):
    job = cron_job_add(app=make_app(), schedule="* * * * *", command="sleep 600", allow_overlap=True, now=T0)
    [first] = cron_tick(now=T0 + timedelta(minutes=1))
    CronRun.objects.filter(pk=first).update(status=CronRunStatus.RUNNING)
    assert len(cron_tick(now=T0 + timedelta(minutes=2))) == 1
    assert job.runs.filter(status=CronRunStatus.SKIPPED).count() == 0


def test_two_ticks_at_the_same_time_start_one_run(make_app):
    job = cron_job_add(app=make_app(), schedule="* * * * *", command="true", now=T0)
    now = T0 + timedelta(minutes=1)
    assert len(cron_tick(now=now)) + len(cron_tick(now=now)) == 1
    assert job.runs.count() == 1


def test_the_sweep_fails_a_run_whose_worker_died(make_app):
    job = cron_job_add(app=make_app(), schedule="* * * * *", command="true", now=T0)
    [run_id] = cron_tick(now=T0 + timedelta(minutes=1))
    CronRun.objects.filter(pk=run_id).update(status=CronRunStatus.RUNNING, started_at=T0 - timedelta(days=1))
    assert cron_runs_sweep() == 1
    run = job.runs.get()
    assert run.status == CronRunStatus.FAILED and "worker stopped" in run.reason


def test_the_api_adds_lists_and_removes_a_job_in_utc(world):
    client = world.client("member")
    added = client.post(
        "/api/v1/apps/demo/cron",
        {"schedule": "*/15  * * * *", "command": "python manage.py clearsessions"},
        format="json",
    )
    assert added.status_code == 201, added.content
    job = added.json()
    assert job["schedule"] == "*/15 * * * *" and job["timezone"] == "UTC" and job["next_run_at"].endswith("Z")
    listed = world.client("viewer").get("/api/v1/apps/demo/cron").json()
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["last_run"] is None
    assert AuditEvent.objects.filter(action="cron.add", target=f"demo #{job['id']}").exists()
    assert client.delete(f"/api/v1/apps/demo/cron/{job['id']}").status_code == 204
    assert client.delete(f"/api/v1/apps/demo/cron/{job['id']}").status_code == 404
    assert AuditEvent.objects.filter(action="cron.remove").exists()


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"schedule": "*/15 * * *", "command": "x"}, "schedule", "has 4 fields"),
        ({"schedule": "* * * * *", "command": ""}, "command", "required"),
        ({"schedule": "* * * * *", "command": "x", "allow_overlap": "yes"}, "allow_overlap", "true or false"),
    ],
)
def test_the_api_refuses_a_bad_job_naming_the_field(world, body, field, text):
    response = world.client("member").post("/api/v1/apps/demo/cron", body, format="json")
    assert response.status_code == 400
    assert text in str(response.json()["errors"][field]) and response.json()["detail"].startswith(field)
    assert not world.app.cron_jobs.exists()
