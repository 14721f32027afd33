"""The long-running commands (deploy/Procfile's daemons, router, registry; the watcher and shipper they were) and
the Celery worker start without Django's system checks: `migrate`, which `make up` runs before it starts them, ran
those. The checks' URL check imports every view; in the daemons process that was ~14 MB of PSS (97 -> 83 MB) and
~0.2 s of CPU at each start, for views it never serves."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_DIR

DAEMONS = {
    "daemons": "berth.operations",
    "watch": "berth.discovery",
    "ship_logs": "berth.observe",
    "router_run": "berth.routing",
    "registry_run": "berth.nodes",
}
# each command run as manage.py runs it, up to its handle() (stood in for): what it imported by then
PROBE = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
django.setup()
from django.conf import settings
from django.core.management import load_command_class

seen = {}
for name, app in json.loads(sys.argv[1]).items():
    command = load_command_class(app, name)
    command.handle = lambda *args, **options: None
    command.run_from_argv(["manage.py", name])
    seen[name] = settings.ROOT_URLCONF in sys.modules
print(json.dumps(seen))
"""


def _urlconf_imported(commands: dict[str, str]) -> dict[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR / "platform")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_daemons_start_without_the_system_checks_and_so_without_the_views():
    assert _urlconf_imported(DAEMONS) == dict.fromkeys(DAEMONS, False)
    # what the probe would see of a command that runs the checks (Django's default): the URLconf, imported
    assert _urlconf_imported({"doctor": "berth.operations"}) == {"doctor": True}


# the Celery worker's own start-up step for Django (celery.fixups.django: on_import_modules -> validate_models), on
# the worker's app; argv[1] "unset" drops what berth.config.celery set, as a worker without it would run
WORKER_PROBE = """
import os, sys
from berth.config.celery import app
from celery.fixups.django import DjangoWorkerFixup
from django.conf import settings

if sys.argv[1] == "unset":
    os.environ.pop("CELERY_SKIP_CHECKS")
DjangoWorkerFixup(app).validate_models()
print(settings.ROOT_URLCONF in sys.modules)
"""


def _worker_urlconf_imported(how: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR / "platform")}
    env.pop("CELERY_SKIP_CHECKS", None)  # this process imported berth.config: the worker's setting, not ours
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, how],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1] == "True"


def test_the_worker_starts_without_the_system_checks_and_so_without_the_views():
    assert _worker_urlconf_imported("as set") is False
    assert _worker_urlconf_imported("unset") is True  # celery's default: the checks, and every view with them
