"""Shared by the add-on tests: the images (built once per machine) and the removal of a killed run's leftovers;
the CLI's live-server fixtures, for the CLI tests here."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from berth.addons.images import addon_image_build
from berth.runtime.addons import LABEL_ADDON

from tests.cli.conftest import ada, berth, cli, fast_passwords, home, shop  # noqa: F401 - fixtures

TEST_TEAM_PREFIX = "adt"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120).stdout


def _remove_leftovers() -> None:
    """Services and volumes a killed earlier run of these tests left (their teams start with adt; the CLI
    tests' add-ons are acme's, named cache-… or bk-…)."""
    for line in _docker("service", "ls", "--filter", f"label={LABEL_ADDON}", "--format", "{{.Name}}").split():
        if line.startswith((f"addon-{TEST_TEAM_PREFIX}", "addon-acme-cache-", "addon-acme-bk-")):
            _docker("service", "rm", line)
    for line in _docker("volume", "ls", "--filter", f"label={LABEL_ADDON}", "--format", "{{.Name}}").split():
        if line.startswith(
            (f"berth-addon-{TEST_TEAM_PREFIX}", "berth-addon-acme-cache-", "berth-addon-acme-bk-")
        ):
            for _ in range(60):
                if "Error" not in (_docker("volume", "rm", line) or "Error"):
                    break
                time.sleep(1)


@pytest.fixture(scope="session")
def addon_images():
    for kind in ("postgres", "redis"):
        addon_image_build(kind)  # reuses an image whose recipe is current
    _remove_leftovers()


# The S3 stand-in of the backup tests: a moto server on 127.0.0.1, started here and stopped by its PID.
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the moto server did not start within 30 s")
    yield endpoint
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(monkeypatch, s3_endpoint):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"berth-backups-{os.getpid()}-{time.monotonic_ns()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return s3_endpoint, bucket
