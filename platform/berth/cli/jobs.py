"""`berth cron…`: an app's scheduled jobs (cron expressions in UTC), each run a one-off in the live release whose
output is in `berth logs` as scheduler[scheduler.N]."""

from __future__ import annotations

import argparse
import shlex

from berth.cli.client import UsageError, app_from_git_remote
from berth.cli.commands import api, app_path, arg, command, when
from berth.cli.output import table

ADD_USAGE = "berth cron:add '*/15 * * * *' -a APP -- COMMAND ..."


def last_run_text(run: dict | None) -> str:
    """`exit 0 in 1.2s at 2026-12-04 20:15:00` / `running since …` / `never`."""
    if run is None:
        return "never"
    if run["status"] in ("queued", "running"):
        return f"{run['status']} since {when(run['started_at'] or run['due_at'])}"
    if run["exit_code"] is None:
        return f"{run['status']}: {run['reason']} at {when(run['finished_at'])}"
    took = f" in {run['duration_seconds']}s" if run["duration_seconds"] is not None else ""
    return f"exit {run['exit_code']}{took} at {when(run['finished_at'])}"


@command("cron", "list an app's scheduled jobs and their last run (times in UTC)", needs_app=True)
def cron(args):
    jobs = api().get(app_path(args, "/cron"))
    text = table(
        jobs,
        ["ID", "SCHEDULE (UTC)", "COMMAND", "NEXT RUN (UTC)", "LAST RUN (UTC)"],
        lambda j: [
            j["id"],
            j["schedule"] + (" (overlap)" if j["allow_overlap"] else ""),
            j["command"],
            when(j["next_run_at"]),
            last_run_text(j["last_run"]),
        ],
        empty=f"{args.app} has no scheduled jobs; add one with: {ADD_USAGE.replace('APP', args.app)}",
    )
    return jobs, text


def split_cron_words(
    words: list[str], app: str | None, allow_overlap: bool
) -> tuple[str, str, str | None, bool]:
    """(schedule, command, app, allow_overlap) from `cron:add`'s words. The schedule comes first, as in
    `berth cron:add "*/15 * * * *" -a APP -- CMD`, so -a and --allow-overlap may stand after it, before `--`
    (argparse gives everything after the first positional word to the command)."""
    dashed = "--" in words
    before = words[: words.index("--")] if dashed else words
    after = words[words.index("--") + 1 :] if dashed else []
    schedule: list[str] = []
    index = 0
    while index < len(before):
        word = before[index]
        if word in ("-a", "--app"):
            if index + 1 >= len(before):
                raise UsageError(f"{word} needs an app name ({ADD_USAGE})")
            app, index = before[index + 1], index + 2
            continue
        if word == "--allow-overlap":
            allow_overlap = True
        elif schedule and not dashed:  # no `--`: the command starts at the first word after the schedule
            after = before[index:]
            break
        else:
            schedule.append(word)
        index += 1
    if len(schedule) != 1:
        raise UsageError(f"give the schedule as one quoted word, then the command: {ADD_USAGE}")
    if not after:
        raise UsageError(f"no command given: {ADD_USAGE}")
    command_line = after[0] if len(after) == 1 else shlex.join(after)
    return schedule[0], command_line, app, allow_overlap


@command(
    "cron:add",
    "run a command on a cron schedule (UTC) as a one-off in the live release",
    arg("-a", "--app", help="default: the `berth` git remote"),
    arg("--allow-overlap", action="store_true", help="start a run even while the previous one still runs"),
    arg(
        "words",
        nargs=argparse.REMAINDER,
        metavar="SCHEDULE -- CMD",
        help="five cron fields in UTC as one word, e.g. '*/15 * * * *' (or @hourly, @daily), then the command",
    ),
)
def cron_add(args):
    schedule, command_line, app, allow_overlap = split_cron_words(args.words, args.app, args.allow_overlap)
    args.app = app or app_from_git_remote()
    if not args.app:
        raise UsageError("no app given: pass -a APP, or run this in a git repository with a `berth` remote")
    job = api().post(
        app_path(args, "/cron"),
        {"schedule": schedule, "command": command_line, "allow_overlap": allow_overlap},
    )
    return job, (
        f"Added job {job['id']} to {args.app}: {job['schedule']} (UTC) {job['command']}\n"
        f"Next run at {when(job['next_run_at'])} UTC; its output will be in berth logs -a {args.app} "
        "as scheduler[scheduler.N]"
    )


@command(
    "cron:remove",
    "remove a scheduled job (a run going on finishes)",
    arg("id", type=int, metavar="ID"),
    needs_app=True,
)
def cron_remove(args):
    api().delete(app_path(args, f"/cron/{args.id}"))
    return {"id": args.id, "removed": True}, f"Removed job {args.id} from {args.app}"
