"""`berth cron`, `cron:add`, `cron:remove` through the installed script against a live server."""

import pytest
from berth.jobs.models import CronJob, CronRun, CronRunStatus
from django.utils import timezone

from tests.cli.conftest import as_json, assert_one_error_line, ok

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_list_and_remove_a_job(cli, shop):
    out = ok(cli("cron:add", "*/15 * * * *", "-a", shop, "--", "python", "manage.py", "clearsessions"))
    assert out.startswith("Added job ") and "*/15 * * * * (UTC) python manage.py clearsessions" in out
    assert "UTC" in out.splitlines()[1] and "scheduler[scheduler.N]" in out
    job = CronJob.objects.get()
    listed = ok(cli("cron", "-a", shop))
    assert "SCHEDULE (UTC)" in listed and "LAST RUN (UTC)" in listed and "never" in listed

    now = timezone.now()
    CronRun.objects.create(
        job=job,
        due_at=now,
        status=CronRunStatus.SUCCEEDED,
        exit_code=0,
        release=1,
        started_at=now - timezone.timedelta(seconds=2.5),
        finished_at=now,
    )
    assert f"exit 0 in 2.5s at {now:%Y-%m-%d %H:%M:%S}" in ok(cli("cron", "-a", shop))
    [as_api] = as_json(cli("cron", "-a", shop, "--json"))
    assert as_api["last_run"]["exit_code"] == 0 and as_api["timezone"] == "UTC"

    assert ok(cli("cron:remove", str(job.pk), "-a", shop)) == f"Removed job {job.pk} from {shop}\n"
    assert_one_error_line(cli("cron:remove", str(job.pk), "-a", shop), contains="no such scheduled job")


def test_allow_overlap_and_a_one_word_command(cli, shop):
    ok(cli("cron:add", "@hourly", "--allow-overlap", "-a", shop, "--", "echo $HOME | wc -c"))
    job = CronJob.objects.get()
    assert job.allow_overlap and job.command == "echo $HOME | wc -c" and job.schedule == "@hourly"
    assert "(overlap)" in ok(cli("cron", "-a", shop))


@pytest.mark.parametrize(
    ("words", "contains", "code"),
    [
        (["*/15 * * *", "--", "true"], "has 4 fields, not 5", 1),
        (["*/15 * * * *"], "no command given", 2),
        (["*/15", "*", "*", "*", "*", "--", "true"], "as one quoted word", 2),
        (["0 25 * * *", "--", "true"], "hour: 25 is out of range 0-23", 1),
    ],
)
def test_a_bad_job_is_one_error_line(cli, shop, words, contains, code):
    result = cli("cron:add", *words[:1], "-a", shop, *words[1:])
    assert_one_error_line(result, contains=contains, code=code)
    assert not CronJob.objects.exists()
