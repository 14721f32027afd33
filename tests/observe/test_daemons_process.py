"""`manage.py daemons`, deploy/Procfile's one process for the watcher, the log shipper and beat (issue 17: they were
three processes, 234 MB PSS idle), run for real: a real Swarm service's line shipped into Redis, beat's due tasks
sent, SIGTERM a clean stop; and a loop that dies takes the process with it, so its supervisor restarts all three."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import REPO_DIR, wait_for
from tests.observe.conftest import run_service  # noqa: F401  (fixture)
from tests.observe.webserver import web_env

PYTHON = str(REPO_DIR / ".venv/bin/python")
MANAGE = str(REPO_DIR / "manage.py")


def lines(rds, key: str) -> list[str]:
    return [fields[b"line"].decode() for _, fields in rds.xrange(key) if b"line" in fields]


def start_daemons(home: Path, *args: str, log: str = "daemons.log") -> tuple[subprocess.Popen, Path]:
    output = home / log
    with output.open("wb") as log:
        process = subprocess.Popen(
            [PYTHON, MANAGE, "daemons", "--schedule", str(home / "beat-schedule"), *args],
            cwd=REPO_DIR,
            env=web_env(home, settings.REDIS_URL),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, output


def stopped(process: subprocess.Popen, timeout: float = 30) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.docker
def test_one_process_ships_an_apps_lines_sends_beats_tasks_and_stops_cleanly(
    run_service,  # noqa: F811
    app_name,
    rds,
    tmp_path,
):
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(
        [PYTHON, MANAGE, "migrate", "-v", "0"],
        env=web_env(home, settings.REDIS_URL),
        check=True,
        timeout=300,
        capture_output=True,
    )
    labels = [f"--only-label={key}={value}" for key, value in run_service.only_labels.items()]
    process, output = start_daemons(home, "--scan-interval", "1", *labels)
    try:
        run_service(app_name, "echo hello from the app; sleep 600")
        wait_for(
            lambda: "hello from the app" in lines(rds, f"berth:logs:{app_name}"),
            timeout=60,
            message="the shipper in the daemons process to ship the app's line",
        )
        # beat's clock sends the cron tick 15 s after it starts with a fresh schedule file
        wait_for(
            lambda: "Sending due task cron-tick (berth.jobs.tick)" in output.read_text(),
            timeout=45,
            message="beat in the daemons process to send the cron tick",
        )
        assert list(home.glob("beat-schedule*")), "beat keeps no schedule file"
        text = output.read_text()
        assert "Message Error" not in text, text[-3000:]  # what beat logs when a task could not be sent
        assert "watcher: following Docker events" in text, text[-2000:]
        assert process.poll() is None, text[-3000:]  # no loop has ended on its own
        # a second one on the same BERTH_HOME (a unit beside make up's, a process an old make up lost) waits
        second, second_output = start_daemons(home, "--scan-interval", "1", *labels, log="second.log")
        try:
            wait_for(
                lambda: "another daemons process holds" in second_output.read_text(),
                timeout=30,
                message="the second daemons process to wait for the first",
            )
            time.sleep(2)
            assert "shipper:" not in second_output.read_text() and second.poll() is None
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = stopped(process)
            stop_s = time.monotonic() - started
            wait_for(
                lambda: "watcher: following Docker events" in second_output.read_text(),
                timeout=30,
                message="the second daemons process to take over once the first has ended",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert stopped(second) == 0, second_output.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            code = stopped(process)
    text = output.read_text()
    assert code == 0, text[-3000:]
    assert text.rstrip().endswith("daemons: stopped"), text[-3000:]
    assert stop_s < 15, f"SIGTERM took {stop_s:.1f} s to stop the loops"


@pytest.mark.docker
def test_a_loop_that_dies_ends_the_process_with_a_reason(tmp_path):
    """The database has no tables (never migrated): the watcher's first reconcile raises, its thread ends, and the
    process exits non-zero naming it (its supervisor starts it again) instead of shipping and ticking on without a
    watcher, unseen."""
    home = tmp_path / "home"
    home.mkdir()
    process, output = start_daemons(home, "--only-label=org.berth.test-nothing=1")
    try:
        code = stopped(process, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = output.read_text()
    assert code == 1, text[-3000:]
    assert "watcher ended on its own; the other loops were stopped" in text, text[-3000:]
