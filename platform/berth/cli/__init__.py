"""The `berth` command line (berth.cli.main)."""

import sys

# httpx imports its own command line (httpx._main: click, rich, pygments) whenever those are installed, and ours
# never uses it: a None there makes that import fail, which httpx expects and passes over. Measured: a third of
# `berth --help`'s start-up where they are installed.
sys.modules.setdefault("httpx._main", None)
