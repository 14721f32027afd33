"""What `berth` loads to start: every command pays for it (the suite alone runs the CLI a thousand times)."""

import importlib.util
import subprocess

from tests.conftest import REPO_DIR

HTTPX_CLI_NEEDS = ("rich", "click", "pygments")  # what httpx's own command line (httpx._main) imports


def test_the_cli_starts_without_httpxs_own_command_line():
    # installed here (pytest, import-linter and celery need them), so httpx would import them all
    assert all(importlib.util.find_spec(name) for name in HTTPX_CLI_NEEDS)
    loaded = subprocess.run(
        [
            str(REPO_DIR / ".venv/bin/python"),
            "-c",
            "import sys, berth.cli.main, httpx; "
            f"print(sorted(name for name in {HTTPX_CLI_NEEDS!r} if name in sys.modules))",
        ],
        cwd=REPO_DIR,
        env={"PYTHONPATH": str(REPO_DIR / "platform")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
