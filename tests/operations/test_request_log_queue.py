"""deploy/lib.sh's ensure_request_log_queue, which `make up` and `make test` run: the kernel's queue of datagrams on
a Unix socket (net.unix.max_dgram_qlen, one per network namespace) raised to 512, as systemd's defaults set it on
Debian, so a burst of requests does not lose the router's access lines (berth.observe.traffic reads them there).

Run for real by bash in a network namespace of the test's own (`unshare -n`): its queue starts at the kernel's 10,
and the machine's own setting is never touched."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR

QUEUE = Path("/proc/sys/net/unix/max_dgram_qlen")


def in_own_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "-n", "bash", "-c", script],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_datagram_queue_is_raised_to_512_once_and_a_larger_one_is_kept():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a network namespace of its own needs root and unshare (make test runs as root)")
    machine = QUEUE.read_text()
    fresh = in_own_namespace(
        f"cat {QUEUE}; source deploy/lib.sh && ensure_request_log_queue && cat {QUEUE} "
        f"&& ensure_request_log_queue && cat {QUEUE}"
    )
    assert fresh.returncode == 0, fresh.stderr
    assert [line for line in fresh.stdout.splitlines() if line.isdigit()] == ["10", "512", "512"], (
        fresh.stdout
    )
    assert fresh.stdout.count("max_dgram_qlen 10 -> 512") == 1  # said once: the second call finds 512
    larger = in_own_namespace(
        f"echo 2048 > {QUEUE}; source deploy/lib.sh && ensure_request_log_queue && cat {QUEUE}"
    )
    assert larger.stdout.split() == ["2048"], larger.stdout
    assert QUEUE.read_text() == machine  # the machine's own namespace untouched
