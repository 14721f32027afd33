"""Shared by the add-on tests: the images (built once per machine) and the removal of a killed run's leftovers;
the CLI's live-server fixtures, for the CLI tests here."""

import subprocess
import time

import pytest
from berth.addons.images import addon_image_build
from berth.runtime.addons import LABEL_ADDON

from tests.cli.conftest import ada, berth, cli, fast_passwords, home, shop  # noqa: F401 - fixtures

TEST_TEAM_PREFIX = "adt"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120).stdout


def _remove_leftovers() -> None:
    """Services and volumes a killed earlier run of these tests left (their teams start with adt; the CLI
    tests' add-ons are acme's, named cache-…)."""
    for line in _docker("service", "ls", "--filter", f"label={LABEL_ADDON}", "--format", "{{.Name}}").split():
        if line.startswith((f"addon-{TEST_TEAM_PREFIX}", "addon-acme-cache-")):
            _docker("service", "rm", line)
    for line in _docker("volume", "ls", "--filter", f"label={LABEL_ADDON}", "--format", "{{.Name}}").split():
        if line.startswith((f"berth-addon-{TEST_TEAM_PREFIX}", "berth-addon-acme-cache-")):
            for _ in range(60):
                if "Error" not in (_docker("volume", "rm", line) or "Error"):
                    break
                time.sleep(1)


@pytest.fixture(scope="session")
def addon_images():
    for kind in ("postgres", "redis"):
        addon_image_build(kind)  # reuses an image whose recipe is current
    _remove_leftovers()
