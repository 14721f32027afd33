"""Servers a test starts as child processes (HAProxy, the web process), their output kept in a file of the test's.

A child that exits, or says its port is taken, while the test waits for it fails the wait at once with what it
printed, instead of a timeout that says nothing; `port_taken` tells a port lost to another process (free_port() closes the port it found, so
another test's process can bind it before the child does) from any other failure, for a fixture to start again on
fresh ports. Test equipment, so it lives with the tests.
"""

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO_DIR

# what a server says when its port is taken: HAProxy ("cannot bind socket (Address already in use)"), gunicorn
# ("Connection in use" on each of its five tries)
PORT_TAKEN = re.compile(r"Address already in use|Connection in use")
# /proc/net/tcp's state of a listening socket
TCP_LISTEN = "0A"


def web_command(port: int, *, workers: int = 1) -> list[str]:
    """The web process as deploy/Procfile runs it (gunicorn, Berth's uvicorn worker, preloaded), on 127.0.0.1:`port`."""
    return [
        str(REPO_DIR / ".venv/bin/gunicorn"),
        "berth.config.asgi:application",
        "--worker-class",
        "berth.config.worker.BerthUvicornWorker",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--preload",
        "--timeout",
        "0",
    ]


class Child:
    """A process the test started (so it stops it, by its PID), stdout and stderr in `log`.

    `group`: the child leads a process group of its own, and stop() signals the group (gunicorn's workers too)."""

    def __init__(self, name: str, command: list[str], *, log: Path, group: bool = False, **popen):
        self.name, self.log, self.group = name, log, group
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=group, **popen
            )

    def output(self, limit: int = 3000) -> str:
        """The end of what the child printed."""
        return self.log.read_text(errors="replace")[-limit:]

    def printed(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def port_taken(self) -> bool:
        return bool(PORT_TAKEN.search(self.log.read_text(errors="replace")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def _signal(self, number: int) -> None:
        try:
            if self.group:
                os.killpg(self.process.pid, number)
            else:
                self.process.send_signal(number)
        except ProcessLookupError:
            pass  # gone between poll() and the signal


class ChildFailed(AssertionError):
    def __init__(self, child: Child, what: str):
        self.child = child
        super().__init__(f"{child.name} {what}; its output ({child.log}):\n{child.output()}")

    @property
    def port_taken(self) -> bool:
        return self.child.port_taken()


def wait_serving(
    predicate: Callable[[], object],
    children: list[Child],
    *,
    timeout: float,
    message: str,
    last_seen: Callable[[], str] = lambda: "",
    interval: float = 0.1,
):
    """tests.conftest.wait_for that raises ChildFailed as soon as one of `children` has exited or said its port is
    taken (gunicorn says so at its first try, then tries four times more, a second apart); on a timeout the error carries what the predicate last saw
    and what each child printed."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if child.process.poll() is not None:
                raise ChildFailed(child, f"exited with {child.process.returncode}")
            if child.port_taken():
                raise ChildFailed(child, "found its port taken")
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    outputs = "".join(f"\n--- {child.name} ({child.log}):\n{child.output()}" for child in children)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {message}; last seen: {last_seen()}{outputs}"
    )


def listening_sockets(port: int) -> int:
    """How many sockets listen on TCP `port`, any address. HAProxy binds with SO_REUSEPORT, so a second HAProxy
    given the same port by another test binds it too, without an error, and the kernel shares the connections out
    between the two: more than one here is a port taken as surely as an error is."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count
