"""Berth: the control plane (Django apps by domain) and the `berth` command line (berth.cli)."""

import sys

# httpx imports its own command line (httpx._main: click, rich, pygments) whenever those are installed, and no
# Berth process uses it: a None there makes that import fail, which httpx expects and passes over. Measured: a
# third of `berth --help`'s start-up where they are installed (tests/cli/test_cli_startup.py).
sys.modules.setdefault("httpx._main", None)
