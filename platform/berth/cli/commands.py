"""The command table of `berth` and the helpers its commands share.

Each command is one function registered in COMMANDS with its arguments (`@command`). It returns what it got from the
API (printed as JSON with `--json`, for scripts) and the text a person reads (aligned tables, like heroku).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from berth.cli.client import (
    Client,
    CliError,
    Credentials,
    UsageError,
    current_credentials,
    segment,
)

ROLES = ("owner", "admin", "member", "viewer")
# used with fullmatch: `$` would also match before a trailing newline ("KEY\n=value")
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Output = tuple[Any, str]  # (the API's JSON for --json, the text for people)


class Interrupted(CliError):
    """Ctrl-C while following a build or a run: it goes on on the server, and the message says how to get back."""

    exit_code = 130


# --- the command table -------------------------------------------------------------------------------------


@dataclass
class Command:
    name: str
    summary: str
    run: Callable[[argparse.Namespace], Output]
    arguments: list[tuple[tuple[str, ...], dict]] = field(default_factory=list)
    needs_app: bool = False


COMMANDS: dict[str, Command] = {}


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict]:
    return flags, options


def command(name: str, summary: str, *arguments: tuple, needs_app: bool = False):
    def register(run: Callable[[argparse.Namespace], Output]):
        COMMANDS[name] = Command(name, summary, run, list(arguments), needs_app)
        return run

    return register


TEAM = arg("-t", "--team", help="default: your only team")


# --- helpers shared by the commands ---------------------------------------------------------------------------


def api() -> Client:
    credentials = current_credentials()
    return Client(credentials.url, credentials.token, ca_bundle=credentials.ca_bundle)


def app_path(args: argparse.Namespace, suffix: str = "") -> str:
    return f"/api/v1/apps/{segment(args.app)}{suffix}"


def resolve_team(client: Client, team: str | None) -> str:
    """An explicit --team, else the user's only team (the API does the same for apps:create)."""
    if team:
        return team
    teams = [t["name"] for t in client.get("/api/v1/me")["teams"]]
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise CliError("you are in no team yet; create one with `berth teams:create NAME`")
    raise CliError(f"you are in several teams ({', '.join(teams)}); pick one with --team TEAM")


def when(value: str | None) -> str | None:
    return value[:19].replace("T", " ") if value else None


def version_label(version: int | None) -> str | None:
    return None if version is None else f"v{version}"


def assignments(words: list[str], what: str) -> dict[str, str]:
    """Parse KEY=VALUE words (the value may contain `=`); a malformed word is a usage error."""
    parsed: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not CONFIG_KEY.fullmatch(key):
            raise UsageError(f"{word!r} is not {what}")
        parsed[key] = value
    return parsed


def prompt(label: str) -> str:
    value = input(label).strip()
    if not value:
        raise CliError(f"{label.rstrip(': ')} is required")
    return value


def read_password() -> str:
    # hidden at a terminal; from a pipe (`echo "$PW" | berth login ...`) read plainly, without getpass's warning
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        raise CliError("a password is required")
    return password


def revoke_quietly(credentials: Credentials) -> str | None:
    """Revoke a stored token with itself; the reason it failed, or None."""
    try:
        Client(credentials.url, credentials.token, ca_bundle=credentials.ca_bundle).delete(
            f"/api/v1/tokens/{segment(credentials.token_id)}"
        )
    except CliError as exc:
        return str(exc)
    return None
