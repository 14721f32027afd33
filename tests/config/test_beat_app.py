"""Beat runs Berth's Celery settings without Django's apps (berth/config/beat.py): the same schedule, broker and
routes as the worker's app, and no Django app or task module loaded for a process that only sends."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_DIR

PROBE = """
import json, sys
import berth.config.beat as beat
app = beat.app
app.loader.import_default_modules()  # what `celery beat` does as it starts
import django.apps
print(json.dumps({
    "apps_ready": django.apps.apps.ready,
    "berth_modules": sorted(m for m in sys.modules if m.startswith("berth.") and not m.startswith("berth.config")
                            and not m.startswith("berth.core")),
    "schedule": {name: entry["task"] for name, entry in app.conf.beat_schedule.items()},
    "broker": app.conf.broker_url,
    "queues": {name: app.amqp.router.route({}, name)["queue"].name
               for name in ("berth.jobs.tick", "berth.builds.build", "berth.deploys.deploy")},
}))
"""


def test_beat_sends_the_workers_schedule_on_its_routes_without_loading_djangos_apps(tmp_path):
    env = {**os.environ, "BERTH_HOME": str(tmp_path), "PYTHONPATH": str(REPO_DIR / "platform")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    beat = json.loads(done.stdout.strip().splitlines()[-1])
    from berth.config.celery import app as worker_app
    from django.conf import settings

    assert beat["apps_ready"] is False
    assert beat["berth_modules"] == []
    assert beat["schedule"] == {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    assert len(beat["schedule"]) >= 7
    assert beat["broker"] == worker_app.conf.broker_url
    assert beat["queues"] == {
        "berth.jobs.tick": "default",
        "berth.builds.build": "builds",
        "berth.deploys.deploy": "deploys",
    }
