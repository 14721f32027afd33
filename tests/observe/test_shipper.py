"""The log shipper against real Swarm services: every line exactly once, across restarts, and gaps said aloud."""

import re
from datetime import datetime

import pytest
from berth.observe.shipper import Shipper, iso_from_ns, parse_docker_time, target_from_labels

from tests.conftest import wait_for

pytestmark = pytest.mark.docker

NUMBERED = (
    'i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.01; done; sleep 600'
)


def shipped(rds, app: str) -> list[dict]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in rds.xrange(f"berth:logs:{app}")
    ]


def numbers(entries: list[dict], prefix: str) -> list[int]:
    return [int(e["line"].split()[1]) for e in entries if e["line"].startswith(prefix + " ")]


def test_every_line_arrives_once_across_a_shipper_restart(run_service, app_name, rds):
    n = 300
    first = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        # started before the service: only the Docker event can attach it (the next scan is a minute away)
        run_service(app_name, NUMBERED.format(n=n))
        wait_for(
            lambda: len(numbers(shipped(rds, app_name), "out")) >= 50, timeout=30, message="the first lines"
        )
    finally:
        first.stop()
    before = len(shipped(rds, app_name))
    assert before < 2 * n, "the shipper was meant to stop halfway"

    second = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        wait_for(
            lambda: len(shipped(rds, app_name)) >= 2 * n,
            timeout=60,
            message=f"all {2 * n} lines after the restart",
        )
    finally:
        second.stop()

    entries = shipped(rds, app_name)
    assert sorted(numbers(entries, "out")) == list(range(1, n + 1))  # none lost, none twice
    assert sorted(numbers(entries, "err")) == list(range(1, n + 1))
    assert len(entries) == 2 * n
    assert {(e["process"], e["instance"]) for e in entries} == {("web", "web.1")}
    assert {e["stream"] for e in entries if e["line"].startswith("out")} == {"stdout"}
    assert {e["stream"] for e in entries if e["line"].startswith("err")} == {"stderr"}
    stamps = [datetime.fromisoformat(e["ts"]) for e in entries if e["stream"] == "stdout"]
    assert stamps == sorted(stamps)

    # a third start with nothing new printed ships nothing again
    third = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        wait_for(lambda: len(third.followers) == 2, timeout=20, message="the scan to attach the container")
        wait_for(
            lambda: all(f.response is not None for f in third.followers.values()),
            timeout=20,
            message="follow",
        )
        import time

        time.sleep(1.5)
    finally:
        third.stop()
    assert len(shipped(rds, app_name)) == 2 * n


def test_lines_rotated_away_while_the_shipper_was_down_leave_a_gap_marker(run_service, app_name, rds):
    # Docker keeps one 1 kB file: 400 lines printed while the shipper is down rotate the last shipped one away.
    script = (
        'i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo "early $i"; done; '
        "while [ ! -f /tmp/go ]; do sleep 0.1; done; "
        'i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo "late $i"; done; sleep 600'
    )
    service = run_service(app_name, script, log_options={"max-size": "1k", "max-file": "1"})
    shipper = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        wait_for(lambda: len(shipped(rds, app_name)) >= 5, timeout=30, message="the early lines")
    finally:
        shipper.stop()
    service.container().exec_run(["touch", "/tmp/go"])
    wait_for(
        lambda: b"late 400" in service.container().logs(tail=1),
        timeout=30,
        message="the late lines to be printed",
    )

    shipper = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        wait_for(
            lambda: any(e["line"] == "late 400" for e in shipped(rds, app_name)),
            timeout=30,
            message="the last line",
        )
    finally:
        shipper.stop()
    entries = shipped(rds, app_name)
    assert numbers(entries, "early") == [1, 2, 3, 4, 5]
    gaps = [e for e in entries if e["stream"] == "gap"]
    assert len(gaps) == 1 and re.search(
        r"web\.1 stdout: lines printed between .* may be missing", gaps[0]["line"]
    )
    late = numbers(entries, "late")
    assert late == sorted(set(late)) and late[-1] == 400 and len(late) < 400  # kept in order, none twice
    assert entries.index(gaps[0]) == 5  # the marker sits where the lines went missing


def test_docker_timestamps_round_trip_without_losing_nanoseconds():
    assert parse_docker_time("2026-11-27T21:30:00.123456789Z") == 1795815000123456789
    assert parse_docker_time("2026-11-27T21:30:00.1Z") == 1795815000100000000  # Go trims trailing zeros
    assert parse_docker_time("2026-11-27T21:30:00Z") == 1795815000000000000
    assert iso_from_ns(1795815000123456789) == "2026-11-27T21:30:00.123456Z"


def test_a_swarm_task_container_is_named_by_process_and_slot():
    labels = {
        "org.berth.app": "shop",
        "org.berth.process": "worker",
        "com.docker.swarm.task.name": "shop-v3-worker.2.abc",
    }
    target = target_from_labels("c" * 64, labels)
    assert (target.app, target.process, target.instance) == ("shop", "worker", "worker.2")
    assert target_from_labels("c" * 64, {"org.berth.process": "web"}) is None


def test_the_ship_logs_command_ships_and_stops_cleanly_on_sigterm(run_service, app_name, rds, tmp_path):
    import os
    import signal
    import subprocess

    from tests.conftest import REPO_DIR

    [(label, value)] = run_service.only_labels.items()
    log = tmp_path / "ship_logs.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(REPO_DIR / ".venv/bin/python"),
                str(REPO_DIR / "manage.py"),
                "ship_logs",
                "--no-metrics",
                "--only-label",
                f"{label}={value}",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_DIR / "platform")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        run_service(app_name, NUMBERED.format(n=20))
        wait_for(lambda: len(shipped(rds, app_name)) >= 40, timeout=60, message="the lines from the command")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "ship_logs: stopped" in log.read_text()
    assert sorted(numbers(shipped(rds, app_name), "out")) == list(range(1, 21))


def test_a_line_longer_than_dockers_16k_buffer_arrives_whole(run_service, app_name, rds):
    script = 'python3 -c \'print("x" * 40000); print("after")\'; sleep 600'
    shipper = Shipper(only_labels=run_service.only_labels).start(scan_interval=60)
    try:
        run_service(app_name, script)
        wait_for(
            lambda: any(e["line"] == "after" for e in shipped(rds, app_name)), timeout=30, message="the lines"
        )
    finally:
        shipper.stop()
    # stored in pieces of at most BERTH_LOG_LINE_MAX_BYTES, each but the last marked `more`; joined, it is whole
    entries = shipped(rds, app_name)
    assert all(len(e["line"]) <= 8192 for e in entries)
    assert ["more" in e for e in entries] == [True] * (len(entries) - 2) + [False, False]
    assert ["".join(e["line"] for e in entries[:-1]), entries[-1]["line"]] == ["x" * 40000, "after"]
