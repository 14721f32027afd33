"""The fork server the tests start the platform's processes and manage.py from (tests/support/forkserver.py) gives
each what a process started alone would have: its command line, environment, own session and output, and its
exit code as subprocess reports it."""

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR, manage, wait_for
from tests.support import forkserver

SHELL = [sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c"]


def test_manage_keeps_stdout_stderr_and_the_exit_code_apart():
    listed = manage("help", "check")
    assert listed.returncode == 0 and "--deploy" in listed.stdout and listed.stderr == ""
    unknown = manage("no-such-command")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "Unknown command: 'no-such-command'" in unknown.stderr
    with pytest.raises(subprocess.CalledProcessError):
        manage("no-such-command", check=True)


def test_a_forked_process_has_its_environment_and_session_and_a_signal_is_its_exit_code(tmp_path):
    log = tmp_path / "out.log"
    script = (
        "import os, time; print(os.environ['PROBE'], os.getsid(0) == os.getpid(), flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PROBE": "from-the-request"}
    process = forkserver.shared().spawn([*SHELL, script], env=env, log=log)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
        assert process.poll() is None
        wait_for(lambda: "from-the-request True" in log.read_text(), timeout=30, message="its line")
    finally:
        process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert process.returncode == -signal.SIGKILL
    process.terminate()  # ended already: a PID the system may have reused is never signalled
