"""What `berth` loads to start: every command pays for it (the suite alone runs the CLI a thousand times)."""

import importlib.util
import json
import os
import subprocess
import sys

from tests.conftest import REPO_DIR, free_port

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


def test_a_command_starts_lean_makes_only_its_parser_and_loads_no_ca_for_plain_http(home, tmp_path):
    """What a command pays before it speaks to the server (~215 ms of CPU, now ~115): no websockets (only
    `logs`/`events` open a socket), no importlib.metadata (only --version reads it), one subparser of ~110, and no
    public CA store loaded for an http:// server. Run in a fresh interpreter, as the `berth` script is."""
    probe = """
import json, ssl, sys
loaded = []
real = ssl.SSLContext.load_verify_locations
ssl.SSLContext.load_verify_locations = lambda self, *a, **k: (loaded.append(a or k), real(self, *a, **k))[1]
from berth.cli import main
parsers = []
made = main.build_parser
main.build_parser = lambda *argv: parsers.append(made(*argv)) or parsers[-1]
code = main.main(["apps"])
print(json.dumps({
    "code": code,
    "modules": sorted(m for m in ("websockets", "importlib.metadata") if m in sys.modules),
    "subparsers": sorted(parsers[0]._subparsers._group_actions[0].choices),
    "cas": len(loaded),
}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(HOME=str(home), BERTH_URL=f"http://127.0.0.1:{free_port()}", BERTH_TOKEN="x")
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"code": 1, "modules": [], "subparsers": ["apps", "help"], "cas": 0}, result.stderr
    assert "cannot reach Berth" in result.stderr
    # an https:// server still gets the public CAs checked (help's full list: test_cli_offline.py's help tests)
    env["BERTH_URL"] = f"https://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["cas"] >= 1, result.stderr
