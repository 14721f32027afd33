"""deploy/lib.sh's systemd_units_update, which deploy/upgrade.sh runs on a systemd install, run for real by bash over
a units folder, with a stand-in `systemctl` on PATH (this machine runs no systemd) that records what it is asked.

Checked: an older Berth's beat, watcher and shipper units are stopped, disabled and removed before berth-daemons is
enabled (singletons: never two watchers), whatever state an interrupted upgrade left; the target is this version's;
an admin's edited unit is kept and named; a failed enable stops the upgrade with a reason."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR

SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$SYSTEMCTL_LOG"
case "$*" in
  "is-active --quiet berth-beat.service") exit 0 ;;  # running
  is-active*) exit 3 ;;
  "enable berth-daemons.service") exit "${ENABLE_STATUS:-0}" ;;
esac
exit 0
"""


@pytest.fixture
def units(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("deploy/lib.sh runs as root only (make up installs packages)")
    folder = tmp_path / "units"
    folder.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    return folder, bin_dir, tmp_path / "systemctl.log"


def update(folder: Path, bin_dir: Path, log: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source deploy/lib.sh && systemd_units_update {folder}"],
        cwd=REPO_DIR,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SYSTEMCTL_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_older_berths_units_give_way_to_berth_daemons(units):
    folder, bin_dir, log = units
    for name in ("beat", "watcher", "shipper", "web", "worker"):
        (folder / f"berth-{name}.service").write_text(f"[Service]\nExecStart=old {name}\n")
    (folder / "berth.target").write_text("[Unit]\nWants=berth-beat.service berth-watcher.service\n")

    result = update(folder, bin_dir, log)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in folder.iterdir()) == [
        "berth-daemons.service",
        "berth-web.service",
        "berth-worker.service",
        "berth.target",
    ]
    assert (folder / "berth.target").read_text() == (REPO_DIR / "deploy/systemd/berth.target").read_text()
    assert (folder / "berth-daemons.service").read_text() == (
        REPO_DIR / "deploy/systemd/berth-daemons.service"
    ).read_text()
    calls = log.read_text().splitlines()
    enabled = calls.index("enable berth-daemons.service")
    for name in ("beat", "watcher", "shipper"):
        assert calls.index(f"disable --now berth-{name}.service") < enabled, calls
        assert f"berth-{name}: stopped, disabled and removed" in result.stdout
    assert calls.index("daemon-reload") < enabled
    # the admin's units are kept, and named as different from this version's
    assert (folder / "berth-web.service").read_text() == "[Service]\nExecStart=old web\n"
    assert (
        "berth-web.service differs from" in result.stdout
        and "berth-daemons.service differs" not in result.stdout
    )


def test_after_an_interrupted_upgrade_a_unit_still_running_is_stopped_and_an_edited_daemons_unit_kept(units):
    """The unit files were removed but beat still runs; the admin had already installed (and edited) berth-daemons."""
    folder, bin_dir, log = units
    (folder / "berth-daemons.service").write_text("[Service]\nExecStart=edited\n")

    result = update(folder, bin_dir, log)

    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert calls.index("disable --now berth-beat.service") < calls.index("enable berth-daemons.service")
    assert "disable --now berth-watcher.service" not in calls  # not installed, not running: nothing to do
    assert (folder / "berth-daemons.service").read_text() == "[Service]\nExecStart=edited\n"
    assert "berth-daemons.service differs from" in result.stdout


def test_a_daemons_unit_that_cannot_be_enabled_stops_the_upgrade(units):
    folder, bin_dir, log = units
    result = update(folder, bin_dir, log, ENABLE_STATUS="1")
    assert result.returncode == 1
    assert "could not enable berth-daemons.service" in result.stderr
