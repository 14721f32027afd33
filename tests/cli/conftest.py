import os
import subprocess

import pytest

from tests.conftest import REPO_DIR

BERTH = str(REPO_DIR / ".venv/bin/berth")


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
