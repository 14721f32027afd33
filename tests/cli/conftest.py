import json
import os
import queue
import subprocess
import threading

import pytest

from tests.conftest import REPO_DIR

BERTH = str(REPO_DIR / ".venv/bin/berth")
PASSWORD = "correct horse battery"


def run_berth(*args: str, home, cwd=None, env: dict | None = None, stdin: str | None = None):
    """The installed `berth` script in a fresh process, with its own HOME and no stray BERTH_* variables."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("BERTH_URL", "BERTH_TOKEN")}
    full_env.update({"HOME": str(home), **(env or {})})
    return subprocess.run(
        [BERTH, *args],
        cwd=cwd or home,
        env=full_env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal: getpass must never wait on a real tty
    )


def assert_one_error_line(result, *, code: int = 1, contains: str = "") -> str:
    """A failure is exactly one `error: ...` line on stderr (never a traceback) and a non-zero exit code."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def berth(home):
    """`berth(*args, cwd=?, env=?, stdin=?)` runs the CLI as a user whose HOME is a fresh folder."""

    def run(*args: str, **kwargs):
        return run_berth(*args, home=home, **kwargs)

    return run


def ok(result) -> str:
    """The stdout of a command that succeeded and said nothing on stderr."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def make_user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.test", password=PASSWORD
    )


@pytest.fixture
def fast_passwords(settings):
    # the live server runs in this process, so it hashes with this setting too
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada(transactional_db, fast_passwords):
    return make_user("ada")


@pytest.fixture
def cli(berth, live_server, ada):
    """`berth` as ada, logged in through `berth login`, owner of the team acme."""
    ok(berth("login", "--url", live_server.url, "--username", "ada", "--password", PASSWORD))
    ok(berth("teams:create", "acme"))
    return berth


@pytest.fixture
def shop(cli):
    ok(cli("apps:create", "shop"))
    return "shop"


class Background:
    """`berth` running in the background, to watch it follow a build or a run while the test moves things on.

    A reader thread collects its stdout line by line, so the test can wait for one line with a time bound."""

    def __init__(self, *args: str, home, env: dict | None = None):
        full_env = {k: v for k, v in os.environ.items() if k not in ("BERTH_URL", "BERTH_TOKEN")}
        full_env.update({"HOME": str(home), **(env or {})})
        self.process = subprocess.Popen(
            [BERTH, *args],
            cwd=home,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def line(self, *, timeout: float = 30) -> str:
        """The next line it prints, waiting at most `timeout` seconds."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"berth printed no new line within {timeout}s after {self.seen!r}") from None
        self.seen.append(line)
        return line

    def finish(self, *, timeout: float = 60) -> subprocess.CompletedProcess:
        """Wait for it to exit (killed by its PID past `timeout`); everything it printed, as subprocess.run gives."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"berth did not exit within {timeout}s") from None
        finally:
            self.reader.join(timeout=10)
            stderr = self.process.stderr.read()
            self.process.stdout.close()
            self.process.stderr.close()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return subprocess.CompletedProcess(
            self.process.args, self.process.returncode, "".join(self.seen), stderr
        )
