"""`berth logs` and `berth events`: an app's log lines and platform events, over the dashboard's WebSockets.

Without -t the server replays the last lines and closes (`follow=0`); with -t the same socket stays open and lines
print as they come until Ctrl-C. Like the rest of the CLI, nothing here imports Django, and every failure becomes
one CliError line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from berth.cli.client import (
    CA_BUNDLE_HINT,
    ApiError,
    CliError,
    certificate_rejected,
    current_credentials,
    segment,
    tls_verification,
)

# (flags, argparse options) pairs, as berth.cli.commands' `arg()` makes them
LOGS_ARGS: list[tuple[tuple[str, ...], dict]] = [
    (("-t", "--tail"), {"action": "store_true", "help": "keep following new lines until Ctrl-C"}),
    (
        ("-n", "--num"),
        {"type": int, "default": 100, "metavar": "N", "help": "lines to show first (the server caps it)"},
    ),
    (("-p", "--process"), {"metavar": "TYPE", "help": "only this process type, e.g. web"}),
    (
        ("-s", "--source"),
        {
            "metavar": "SOURCE",
            "help": "only lines of this source: router (access lines), berth (platform events) or a process type",
        },
    ),
]
EVENTS_ARGS: list[tuple[tuple[str, ...], dict]] = [
    (("-t", "--tail"), {"action": "store_true", "help": "keep following new events until Ctrl-C"}),
    (
        ("-n", "--num"),
        {"type": int, "default": 20, "metavar": "N", "help": "events to show first (max 1000)"},
    ),
]

CLOSE_REASONS = {
    4401: "the server rejected your token; it may be revoked or expired: log in again with `berth login --url {url}`",
    4403: "you may not see this (your role in the app's team is too low)",
    4404: "app {app!r} not found",
}


def websocket_url(base: str, path: str, query: dict[str, Any]) -> str:
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}?{urlencode(query)}"


def messages(app: str, what: str, query: dict[str, Any]) -> Iterator[dict]:
    """Each JSON message the server sends on /ws/apps/<app>/<what>, until it closes the socket."""
    # imported here, by the two commands that open a socket: websockets takes ~60 ms of CPU to import (and with it
    # importlib.metadata), which every other command of the CLI would pay at its start
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    credentials = current_credentials()
    url = websocket_url(credentials.url, f"/ws/apps/{segment(app)}/{what}", query)
    # wss:// checks the certificate as the API calls do (the same CA bundle); ws:// takes no TLS context at all
    verification = tls_verification(credentials.ca_bundle)
    tls = {"ssl": verification} if url.startswith("wss://") and verification is not True else {}
    try:
        connection = connect(
            url,
            additional_headers={"Authorization": f"Bearer {credentials.token}"},
            open_timeout=30,
            max_size=None,
            **tls,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        if certificate_rejected(exc):
            raise CliError(
                f"cannot verify the TLS certificate of {credentials.url} ({exc}); {CA_BUNDLE_HINT}"
            ) from None
        raise CliError(f"cannot reach Berth at {credentials.url}: {exc}") from None
    with connection:
        try:
            for text in connection:
                yield json.loads(text)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code in CLOSE_REASONS:
                raise ApiError(
                    CLOSE_REASONS[code].format(url=credentials.url, app=app), status=code
                ) from None
            raise CliError(f"the connection to {credentials.url} broke ({exc})") from None


def log_text(message: dict) -> str | None:
    """A message as `berth logs` prints it: `ts process[instance]: line`; None for one that is not a line."""
    if message.get("type") == "line":
        return f"{message['ts']} {message['process']}[{message['instance']}]: {message['line']}"
    return None


def note_text(message: dict) -> str | None:
    # Notes about the stream itself go to stderr, so stdout stays only the app's lines (for grep and pipes).
    if message.get("type") == "gap":
        return f"-- gap: {message.get('message', '')} --"
    if message.get("type") == "dropped":
        return f"-- {message.get('count')} lines dropped: this terminal did not keep up --"
    if message.get("type") == "note":  # e.g. a replay bounded by the server (BERTH_LOG_REPLAY_MAX_LINES)
        return f"-- {message.get('message', '')} --"
    return None


def event_text(message: dict) -> str | None:
    if message.get("type") == "event":
        return f"{message['ts']} {message['kind']}: {message['message']}"
    return None


def follow(stream: Iterator[dict], render, args: argparse.Namespace) -> tuple[Any, str]:
    """Print each message as it comes (a JSON line each with --json) until the server closes or Ctrl-C."""
    as_json = args.json
    args.json = False  # already printed line by line; the command table must not print a JSON document after
    try:
        for message in stream:
            if as_json:
                if message.get("type") != "health":
                    print(json.dumps(message), flush=True)
                continue
            note = note_text(message)
            if note:
                print(note, file=sys.stderr, flush=True)
            text = render(message)
            if text is not None:
                print(text, flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how -t ends: not an error
    return None, ""


def logs(args: argparse.Namespace) -> tuple[Any, str]:
    """berth logs -a APP [-t] [-n N] [-p TYPE] [-s SOURCE]"""
    if args.num < 0:
        raise CliError("-n must be 0 or more")
    # the server bounds a replay (BERTH_LOG_REPLAY_MAX_LINES) and says so in a note
    query: dict[str, Any] = {"tail": args.num}
    # a source is the `process` field of a line: router lines and platform events carry theirs like a process
    source = getattr(args, "source", None)
    if args.process and source and args.process != source:
        raise CliError("-p and --source name different sources: give one")
    if args.process or source:
        query["process"] = args.process or source
    if args.tail:
        return follow(messages(args.app, "logs", query), log_text, args)
    received = list(messages(args.app, "logs", {**query, "follow": 0}))
    lines = []
    for message in received:
        text = log_text(message) or note_text(message)
        if text is not None:
            lines.append(text)
    return received, "\n".join(lines) if lines else f"No log lines for {args.app} yet."


def events(args: argparse.Namespace) -> tuple[Any, str]:
    """berth events -a APP [-t] [-n N]"""
    if args.num < 0:
        raise CliError("-n must be 0 or more")
    query: dict[str, Any] = {"tail": min(args.num, 1000)}
    if args.tail:
        return follow(messages(args.app, "events", query), event_text, args)
    received = [m for m in messages(args.app, "events", {**query, "follow": 0}) if m.get("type") == "event"]
    if not received:
        return received, f"No events for {args.app} yet."
    lines = [["WHEN", "KIND", "MESSAGE"]] + [
        [m["ts"][:19].replace("T", " "), m["kind"], m["message"]] for m in received
    ]
    widths = [max(len(row[i]) for row in lines) for i in range(2)]
    lines.insert(1, ["-" * widths[0], "-" * widths[1], "-------"])
    return received, "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in lines)
