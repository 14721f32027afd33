"""`berth ps` and one-off runs (`berth run`), whose exit code becomes the CLI's."""

from __future__ import annotations

import argparse
import shlex
import time

from berth.cli.client import (
    ApiError,
    Client,
    CliError,
    UsageError,
    segment,
)
from berth.cli.commands import (
    Interrupted,
    api,
    app_path,
    arg,
    command,
    version_label,
    when,
)
from berth.cli.output import table
from berth.cli.releases import echo

# --- processes and one-off runs -----------------------------------------------------------------------------------


def where(row: dict) -> str | None:
    if row.get("address") and row.get("port"):
        return f"{row['address']}:{row['port']}"
    return row.get("address") or row.get("node")


def placements(client: Client, args: argparse.Namespace) -> dict[str, list[str]]:
    """Each process type's placement constraints (`berth ps:place`), {} from a server without placement."""
    try:
        rows = client.get(app_path(args, "/placement"))
    except ApiError as exc:
        if (
            exc.status == 404
        ):  # asked after /ps found the app: a server from before placement, all run anywhere
            return {}
        raise
    return {row["process"]: list(row.get("constraints") or []) for row in rows}


def formation_lines(formation: list[dict], placed: dict[str, list[str]]) -> list[str]:
    """`web: 2 replicas, placed on zone=a`: how many of each process type should run, and where."""
    lines = []
    for row in formation:
        count = row.get("replicas") or 0
        where = placed.get(row["process"])
        lines.append(
            f"{row['process']}: {count} replica{'' if count == 1 else 's'}, "
            + (f"placed on {' '.join(where)}" if where else "on any node")
        )
    return lines


@command("ps", "list an app's running processes", needs_app=True)
def ps(args):
    client = api()
    rows = client.get(app_path(args, "/ps"))
    formation = client.get(app_path(args, "/formation"))
    if formation and all("constraints" in row for row in formation):  # a server whose formation says it
        placed = {row["process"]: list(row["constraints"] or []) for row in formation}
    else:
        placed = placements(client, args)
    rows = sorted(rows, key=lambda r: (r.get("process") or "", -(r.get("release") or 0), r.get("id") or ""))
    header = formation_lines(formation, placed)
    return rows, "".join(f"{line}\n" for line in header) + ("\n" if header else "") + table(
        rows,
        ["PROCESS", "ID", "RELEASE", "STATE", "WHERE", "STARTED", "RESTARTS", "ERROR"],
        lambda r: [
            r.get("process"),
            (r.get("id") or "")[:12],
            version_label(r.get("release")),
            r.get("state")
            if r.get("state") == r.get("desired_state") or not r.get("desired_state")
            else f"{r.get('state')} (to {r['desired_state']})",
            where(r),
            when(r.get("started_at")),
            r.get("restarts"),
            r.get("error"),
        ],
        empty=f"{args.app} has no processes running.",
    )


RUN_EXIT_GRACE = 10.0  # seconds


def follow_run(client: Client, args: argparse.Namespace, run_id: str) -> dict:
    """Print a run's output as it arrives; return its final state, whose exit code becomes ours."""
    path = app_path(args, f"/runs/{segment(run_id)}")
    output = []
    try:
        for line in client.lines(f"{path}/output"):
            if args.json:
                output.append(line)
            else:
                echo(line)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following run {run_id}; it goes on (`berth runs:output {run_id}` to follow it again)"
        ) from None
    run = client.get(path)
    # Docker can end the log stream a moment before it records the exit: give it a few seconds, not for ever
    deadline = time.monotonic() + RUN_EXIT_GRACE
    while run.get("status") != "exited" and time.monotonic() < deadline:
        time.sleep(0.2)
        run = client.get(path)
    if run.get("status") != "exited":
        raise CliError(
            f"the output of run {run_id} ended while it was still {run.get('status')}; "
            f"follow it again with `berth runs:output {run_id}`"
        )
    # a run killed without a code (lost container) is a failure, never a silent 0
    args.exit_code = run["exit_code"] if isinstance(run.get("exit_code"), int) else 1
    return run | ({"output": output} if args.json else {})


@command(
    "run",
    "run a one-off command in the live release; exits with its exit code",
    arg("--detach", action="store_true", help="start it and return; read its output with runs:output"),
    arg(
        "words",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="the command; several words are quoted as given, one word is run by sh (for pipes, $VARS...)",
    ),
    needs_app=True,
)
def run(args):
    words = args.words[1:] if args.words[:1] == ["--"] else args.words
    if not words:
        raise UsageError("no command given: berth run [--detach] [-a APP] -- COMMAND ...")
    command_line = words[0] if len(words) == 1 else shlex.join(words)
    client = api()
    started = client.post(app_path(args, "/runs"), {"command": command_line, "detach": args.detach})
    if args.detach:
        return started, (
            f"Started run {started['id']} of {args.app} v{started['release']}: {started['command']}\n"
            f"Read its output with: berth runs:output {started['id']} -a {args.app}"
        )
    # nothing of ours on stdout: `berth run -- cat dump.sql > dump.sql` must get the command's output only
    return started | follow_run(client, args, started["id"]), ""


@command(
    "runs:output",
    "print a one-off run's output until it exits; exits with its exit code",
    arg("id", metavar="ID"),
    needs_app=True,
)
def runs_output(args):
    return follow_run(api(), args, args.id), ""
