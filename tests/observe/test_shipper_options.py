"""The shipper's options on the commands that run it (`ship_logs`, `daemons`): a malformed --only-label is refused in
one line before anything starts; and the worker's main process does not import boto3 unless backups go to S3."""

import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR
from tests.observe.webserver import web_env


@pytest.mark.parametrize("command", ["ship_logs", "daemons"])
@pytest.mark.parametrize("label", ["no-equals-sign", "=value"])
def test_a_malformed_only_label_is_refused_in_one_line(command, label, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_DIR / "manage.py"), command, f"--only-label={label}"],
        cwd=REPO_DIR,
        env=web_env(tmp_path, "redis://127.0.0.1:1/0"),  # nothing is reached: the option is refused first
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"CommandError: --only-label {label!r}: use KEY=VALUE"]


WORKER_IMPORTS = """
import sys
import django
django.setup()
from berth.config.celery import app
app.loader.import_default_modules()  # every task module, as the worker's main process imports them
from berth.addons.store import backup_store
backup_store()
print("boto3" in sys.modules)
"""


def test_the_workers_modules_and_a_folder_store_do_not_import_boto3(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORTS],
        cwd=REPO_DIR,
        env=web_env(tmp_path, "redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
