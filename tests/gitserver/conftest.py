"""Real git clients against real servers: Django's threaded WSGI live server, and gunicorn with the uvicorn worker."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import REPO_DIR, free_port, wait_for
from tests.gitserver.fakes import READ_TOKEN, WRITE_TOKEN

# Small enough to test quickly, big enough for the 20 MB push.
ASGI_MAX_PUSH_BYTES = 24 * 2**20


class Git:
    """The git command line with a private HOME: no user config, no credential helper, never a prompt."""

    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Tess Ter",
            "GIT_AUTHOR_EMAIL": "tess@example.com",
            "GIT_COMMITTER_NAME": "Tess Ter",
            "GIT_COMMITTER_EMAIL": "tess@example.com",
            "LC_ALL": "C",
        }

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120):
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def timed(self, *args: str, cwd: Path, timeout: float = 120) -> SimpleNamespace:
        """Run git and timestamp each stderr line as this test reads it (to tell live output from a dump)."""
        process = subprocess.Popen(
            ["git", *args], cwd=cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        lines: list[tuple[float, str]] = []

        def read():
            buffer = b""
            while chunk := os.read(process.stderr.fileno(), 4096):
                buffer += chunk
                *complete, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
                now = time.time()
                lines.extend((now, line.decode("utf-8", "replace")) for line in complete if line.strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.join(timeout=10)
        return SimpleNamespace(
            returncode=returncode, lines=lines, stderr="\n".join(line for _, line in lines)
        )

    def commit(self, work: Path, message: str, files: dict[str, bytes] | None = None) -> str:
        for name, content in (files or {f"file-{time.monotonic_ns()}.txt": b"hello\n"}).items():
            (work / name).write_bytes(content)
        self("add", "-A", cwd=work)
        self("commit", "-q", "-m", message, cwd=work)
        return self("rev-parse", "HEAD", cwd=work).stdout.strip()


def remote_url(base_url: str, app: str, token: str = WRITE_TOKEN) -> str:
    host = base_url.removeprefix("http://")
    return f"http://git:{token}@{host}/git/{app}.git"


def remote_ref(git: Git, base_url: str, app: str, ref: str = "refs/heads/main") -> str | None:
    out = git("ls-remote", remote_url(base_url, app, READ_TOKEN), ref).stdout.split()
    return out[0] if out else None


@pytest.fixture
def git(tmp_path) -> Git:
    return Git(tmp_path / "git-home")


@pytest.fixture
def fake_seams():
    """The fake GitAccess/GitPushHandler in this process; the project's are put back afterwards."""
    from berth.gitserver import seams

    from tests.gitserver.fakes import install

    previous = (seams.get_git_access(), seams.get_push_handler())
    install()
    yield
    seams.set_git_access(previous[0])
    seams.set_push_handler(previous[1])


@pytest.fixture
def wsgi_server(tmp_path, settings, monkeypatch, fake_seams):
    """Django's live server (threaded WSGI, as pytest-django's live_server) without its database fixture.

    The git view needs no database, and creating the shared test database would disturb other runs.
    Hooks run in their own process and load tests.gitserver.settings to get the fake push handler.
    """
    from django.test.testcases import LiveServerThread, _StaticFilesHandler

    settings.BERTH_HOME = tmp_path / "home"
    settings.BERTH_HOME.mkdir()
    settings.ROOT_URLCONF = "tests.gitserver.urls"
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.gitserver.settings")
    monkeypatch.setenv("BERTH_HOME", str(settings.BERTH_HOME))
    monkeypatch.setenv("DATABASE_URL", "")
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(timeout=30)
    if thread.error:
        raise thread.error
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{thread.port}", home=settings.BERTH_HOME)
    finally:
        thread.terminate()
        thread.join(timeout=30)


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.fixture(scope="module")
def asgi_server(tmp_path_factory):
    """gunicorn with the uvicorn worker, as `make up` runs it, on a free port; stopped by PID."""
    home = tmp_path_factory.mktemp("asgi-home")
    port = free_port()
    env = {
        **os.environ,
        "BERTH_HOME": str(home),
        "DATABASE_URL": "",  # SQLite in this home: the git view reads no database, and no shared one is touched
        "DJANGO_SETTINGS_MODULE": "tests.gitserver.settings",
        "PYTHONPATH": f"{REPO_DIR / 'platform'}:{REPO_DIR}",
        "BERTH_GIT_MAX_PUSH_BYTES": str(ASGI_MAX_PUSH_BYTES),
        "BERTH_GIT_PUSH_WAIT": "60",
    }
    log = (home / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [
            str(REPO_DIR / ".venv/bin/gunicorn"),
            "berth.config.asgi:application",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=REPO_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answered():
            try:
                return httpx.get(f"{url}/healthz", timeout=5)
            except httpx.TransportError:
                return None

        wait_for(answered, timeout=30, message="gunicorn to answer")
        yield SimpleNamespace(url=url, home=home, pid=process.pid, log=home / "gunicorn.log")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
