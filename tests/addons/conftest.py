"""Shared by the add-on tests: the images (built once per machine) and the removal of a killed run's leftovers;
the CLI's live-server fixtures, for the CLI tests here."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import boto3
import docker
import pytest
from berth.addons.images import addon_image_build
from berth.runtime.addons import LABEL_ADDON
from berth.runtime.client import docker_client

from tests.cli.conftest import ada, berth, cli, fast_passwords, home, shop  # noqa: F401 - fixtures
from tests.conftest import TEST_RUN_STARTED

TEST_TEAM_PREFIX = "adt"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120).stdout


def _created(stamp: str) -> float:
    """Docker's CreatedAt (RFC 3339: nanoseconds, Z or an offset) as a Unix time."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    return datetime.fromisoformat(match[1] + ("+00:00" if match[2] == "Z" else match[2])).timestamp()


def _remove_addons(*prefixes: str, created_before: float | None = None) -> None:
    """The add-on services and volumes whose names (less their addon-/berth-addon- start) begin with one of
    `prefixes`; only those made before `created_before` when given."""

    def chosen(name: str, stamp: str, start: str) -> bool:
        if not name.removeprefix(start).startswith(prefixes):
            return False
        return created_before is None or _created(stamp) < created_before

    client = docker_client()
    for service in client.api.services(filters={"label": LABEL_ADDON}):
        if chosen(service["Spec"]["Name"], service["CreatedAt"], "addon-"):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_service(service["ID"])
    for volume in client.api.volumes(filters={"label": LABEL_ADDON}).get("Volumes") or []:
        if chosen(volume["Name"], volume["CreatedAt"], "berth-addon-"):
            for _ in range(60):  # in use until the service's container has gone
                try:
                    client.api.remove_volume(volume["Name"])
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    time.sleep(1)


def _remove_leftovers() -> None:
    """What a killed earlier run of these tests left: add-ons of teams starting with adt, and the CLI tests'
    (acme's, named cache-… or bk-…), made before this run started. Never a newer one: the tests of the other
    xdist workers (and of a run beside this one) are using theirs."""
    _remove_addons(f"{TEST_TEAM_PREFIX}", "acme-cache-", "acme-bk-", created_before=TEST_RUN_STARTED)


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
