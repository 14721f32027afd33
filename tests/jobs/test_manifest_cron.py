"""app.json's `cron` section: checked with the push (one line naming the field), and each live release makes the
app's manifest jobs exactly what it declares, leaving jobs added by hand alone."""

import json

import pytest
from berth.builds.errors import BuildError
from berth.builds.manifest import manifest_read
from berth.deploys.signals import build_released
from berth.jobs.models import CronJob
from berth.jobs.services import cron_job_add


def _manifest(tmp_path, data):
    (tmp_path / "app.json").write_text(json.dumps(data))
    return manifest_read(tmp_path)


def test_the_cron_section_is_read_and_a_bad_one_refused_in_one_line(tmp_path):
    read = _manifest(tmp_path, {"cron": [{"schedule": "*/15 * * * *", "command": " python tick.py "}]})
    assert read.cron == ({"schedule": "*/15 * * * *", "command": "python tick.py", "allow_overlap": False},)
    assert _manifest(tmp_path, {"name": "no cron"}).cron is None
    for cron, message in (
        ("daily", "app.json: cron must be a list"),
        ([{"schedule": "61 * * * *", "command": "x"}], "app.json: cron[0].schedule: minute"),
        ([{"schedule": "* * * * *"}], "app.json: cron[0].command must be"),
        (
            [{"schedule": "* * * * *", "command": "x", "allow_overlap": "yes"}],
            "app.json: cron[0].allow_overlap",
        ),
        ([{"schedule": "* * * * *", "command": "x", "at": "noon"}], "app.json: cron[0] must be an object of"),
    ):
        with pytest.raises(BuildError) as refused:
            _manifest(tmp_path, {"cron": cron})
        assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_each_live_release_keeps_exactly_the_declared_jobs_and_leaves_hand_made_ones(world):
    app = world.app
    by_hand = cron_job_add(app=app, schedule="0 3 * * *", command="python backup.py")

    def release(*entries):
        build_released.send(sender=None, app=app, manifest_cron=tuple(entries))

    tick = {"schedule": "*/15 * * * *", "command": "python tick.py", "allow_overlap": False}
    report = {"schedule": "0 8 * * 1", "command": "python report.py", "allow_overlap": True}
    release(tick, report)
    jobs = {(j.schedule, j.command, j.from_manifest) for j in CronJob.objects.filter(app=app)}
    assert jobs == {
        ("0 3 * * *", "python backup.py", False),
        ("*/15 * * * *", "python tick.py", True),
        ("0 8 * * 1", "python report.py", True),
    }
    kept = CronJob.objects.get(app=app, command="python tick.py")
    release(tick)  # report.py dropped from app.json: gone; tick.py kept as it was (same row, same next time)
    assert set(CronJob.objects.filter(app=app).values_list("command", flat=True)) == {
        "python backup.py",
        "python tick.py",
    }
    assert CronJob.objects.get(app=app, command="python tick.py").next_run_at == kept.next_run_at
    build_released.send(sender=None, app=app)  # a release without a cron section changes nothing
    release()  # an empty section removes the manifest's jobs, never the hand-made one
    assert list(CronJob.objects.filter(app=app).values_list("pk", flat=True)) == [by_hand.pk]
