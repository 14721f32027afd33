"""A Python that has imported the platform's libraries once, forking the platform's processes for the tests.

Each end-to-end test starts the platform's web, worker and watcher (tests/e2e/conftest.py), ~100 tests a run: each a
fresh interpreter importing Django, Celery, DRF, the docker SDK, redis, uvicorn... before it does anything, ~0.5 s
of CPU each, on a machine the suite keeps busy from start to end. A process forked from here runs the same program
(gunicorn's, celery's or manage.py's main, with the command line, environment, working folder and log it was
given), in a session of its own; only the libraries' import was done before. Django is not set up here: each process
reads its own settings from its own environment, as it would started alone.

`python -m tests.support.forkserver SOCKET` serves one JSON line per connection ({"argv", "env", "cwd", "log",
"status"}) and answers the forked process's PID. When a process ends, its exit code (negative: the signal, as
subprocess says it) is written to its "status" file: the test's `Forked` handle reads it there (the process is this
server's child, not the test's). Test equipment, so it lives with the tests."""

import atexit
import importlib
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# what the platform's processes import before they set Django up (a module that needs settings to import is not
# here: each process imports it for itself)
LIBRARIES = (
    "django.db.models",
    "django.http",
    "django.urls",
    "django.forms",
    "django.template",
    "django.core.handlers.asgi",
    "django.core.management",
    "rest_framework",
    "celery",
    "celery.app.base",
    "celery.apps.worker",
    "celery.worker",
    "kombu",
    "kombu.transport.redis",
    "redis",
    "redis.asyncio",
    "docker",
    "requests",
    "httpx",
    "channels",
    "channels_redis.core",
    "uvicorn",
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "psycopg",
    "psycopg_pool",
    "cryptography.fernet",
    "asgiref.sync",
)


def _preload() -> None:
    for name in LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (not installed, or needs settings: the process imports it itself)
            pass


def _reap(children: dict[int, str]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        path = children.pop(pid, None)
        if path:
            Path(path).write_text(str(os.waitstatus_to_exitcode(status)))


def serve(path: str) -> dict:
    """Fork a process for each request, until stopped or the test process that started it is gone (killed: this
    one goes too); returns only in a forked process, with its request."""
    parent = os.getppid()
    _preload()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    children: dict[int, str] = {}
    while True:
        _reap(children)
        ready, _, _ = select.select([server], [], [], 0.2)
        if not ready:
            if os.getppid() != parent:
                raise SystemExit(0)
            continue
        connection, _ = server.accept()
        with connection, connection.makefile("rb") as lines:
            request = json.loads(lines.readline())
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                server.close()
                return request
            children[pid] = request["status"]
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def become(request: dict) -> None:
    """This forked process becomes the requested program, as if started alone with its command line."""
    os.setsid()
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for number, key in ((1, "log"), (2, "stderr" if request.get("stderr") else "log")):
        out = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, number)
        os.close(out)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # what PYTHONPATH would have put on the path of an interpreter started with this environment
    for entry in reversed(request["env"].get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(1, entry)
    argv = request["argv"]
    program = os.path.basename(argv[0])
    # each program's main imported here, not at the top: the test processes import this module for Forked and
    # ForkServer only (the server preloaded these)
    if program == "gunicorn":
        from gunicorn.app.wsgiapp import run

        sys.argv = argv
        run()
    elif program == "celery":
        from celery.__main__ import main

        sys.argv = argv
        main()
    elif len(argv) > 1 and argv[1].endswith("manage.py"):
        sys.argv = argv[1:]
        sys.path[0] = str(Path(argv[1]).resolve().parent)
        runpy.run_path(argv[1], run_name="__main__")
    else:
        raise SystemExit(f"forkserver: no way to run {argv!r}")


class Forked:
    """A process the fork server started for the test: what the test uses of subprocess.Popen (pid, args, poll,
    wait, send_signal, terminate, kill, returncode)."""

    def __init__(self, pid: int, args: list[str], status: Path):
        self.pid, self.args, self._status = pid, args, status
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            text = self._status.read_text()
            if text:
                self.returncode = int(text)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:  # as Popen: never a PID the system may have given to another process since
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The server as a child of the test process (started here, stopped by its PID)."""

    def __init__(self, directory: Path, *, python: str, cwd: Path, env: dict):
        self.directory = directory
        self.socket = directory / "forkserver.sock"
        self.cwd = cwd
        self._count = 0
        self._log = (directory / "forkserver.log").open("wb")
        self.process = subprocess.Popen(
            [python, "-m", "tests.support.forkserver", str(self.socket)],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the fork server did not start: {(directory / 'forkserver.log').read_text()}"
                )
            time.sleep(0.05)

    def spawn(self, argv: list[str], *, env: dict, log: Path, stderr: Path | None = None) -> Forked:
        """Start `argv` (gunicorn, celery or `python manage.py`) with `env`, its output in `log` (its stderr in
        `stderr` when given)."""
        self._count += 1
        status = self.directory / f"exit-{self._count}"
        request = {
            "argv": argv,
            "env": env,
            "cwd": str(self.cwd),
            "log": str(log),
            "stderr": str(stderr) if stderr else "",
            "status": str(status),
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            connection.connect(str(self.socket))
            connection.sendall(json.dumps(request).encode() + b"\n")
            with connection.makefile("rb") as answer:
                pid = json.loads(answer.readline())["pid"]
        return Forked(pid, argv, status)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: ForkServer | None = None


def shared() -> ForkServer:
    """This test process's fork server, started at its first use and stopped (by its PID) when the process exits."""
    global _shared
    if _shared is None:
        repo = Path(__file__).resolve().parents[2]
        _shared = ForkServer(
            Path(tempfile.mkdtemp(prefix="berth-forkserver-")),
            python=str(repo / ".venv/bin/python"),
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo / "platform")},
        )
        atexit.register(_shared.stop)
    return _shared


def main() -> None:
    request = serve(sys.argv[1])
    try:
        become(request)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
