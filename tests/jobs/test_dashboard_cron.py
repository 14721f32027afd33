"""The app page's scheduled jobs (its Workflow card, templates/dashboard/_workflow.html): each job with its
schedule (UTC), command and last run."""

from datetime import timedelta

import pytest
from berth.jobs.models import CronRun, CronRunStatus
from berth.jobs.services import cron_job_add
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db


def page(world, role: str = "viewer") -> str:
    client = Client()
    client.force_login(world.users[role])
    response = client.get("/apps/demo/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_app_page_lists_jobs_and_their_last_run_in_utc(world):
    assert 'id="workflow-no-cron"' in page(world)
    job = cron_job_add(app=world.app, schedule="*/15 * * * *", command="python manage.py clearsessions")
    # Finished at second 1 of a minute, so it started in the minute before: the page shows when a run started.
    finished = timezone.now().replace(second=1, microsecond=0)
    run = CronRun.objects.create(
        job=job,
        due_at=finished,
        status=CronRunStatus.FAILED,
        exit_code=2,
        started_at=finished - timedelta(seconds=3),
        finished_at=finished,
    )
    html = page(world)
    assert "times in UTC" in html and f'data-cron-job="{job.pk}"' in html
    assert "*/15 * * * *" in html and "python manage.py clearsessions" in html
    assert f"{run.status} (exit 2) in 3.0 s" in html
    assert f"{run.started_at:%Y-%m-%d %H:%M} UTC" in html
