"""`berth`: a thin Heroku-style command line over the REST API v1.

Each command is one function registered in COMMANDS with its arguments. It returns what it got from the API
(printed as JSON with `--json`, for scripts) and the text a person reads (aligned tables, like heroku).
Every failure is one `error: ...` line on stderr and exit code 1 (2 for a wrong command line).
Commands that follow a build or a run print its lines as they arrive and return an empty text; `run` sets
`args.exit_code` so that `berth run` exits with its command's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import berth.cli.drains  # noqa: F401 - registers its commands (an `import` line: the one below is full)
from berth.cli import account, addons, apps, certs, jobs, pipelines, processes, releases, users, webhooks  # noqa: F401 - each registers its commands, in this order
from berth.cli.client import (
    CliError,
    UsageError,
    app_from_git_remote,
)
from berth.cli.commands import COMMANDS, Command, command
from berth.cli.logs import EVENTS_ARGS, LOGS_ARGS, events, logs
from berth.cli.nodes import NODE_COMMANDS

command("logs", "show an app's log lines (-t: follow them live)", *LOGS_ARGS, needs_app=True)(logs)
command("events", "show an app's platform events (-t: follow them)", *EVENTS_ARGS, needs_app=True)(events)


for _name, _summary, _arguments, _run, _needs_app in NODE_COMMANDS:
    command(_name, _summary, *_arguments, needs_app=_needs_app)(_run)


# --- the parser and the entry point -----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # one line, not argparse's usage block: scripts grep stderr for `error:`
        name = self.prog.partition(" ")[2]
        if message.startswith("argument COMMAND: invalid choice"):
            # argparse would list all the commands on this one line
            message = "unknown command " + message.split(":", 2)[2].split(" (choose")[0].strip()
        raise UsageError(f"{message} (see `berth help{' ' + name if name else ''}`)")


def synopsis(cmd: Command) -> str:
    words = [cmd.name]
    for flags, options in cmd.arguments:
        metavar = options.get("metavar") or (flags[0].upper() if not flags[0].startswith("-") else None)
        if not flags[0].startswith("-"):
            words.append(metavar + (" ..." if options.get("nargs") in ("+", argparse.REMAINDER) else ""))
        elif options.get("action") == "store_true":
            words.append(f"[{flags[-1]}]")
        else:
            flag = flags[-1]
            text = f"{flag} {metavar or flag.lstrip('-').upper()}"
            words.append(text if options.get("required") else f"[{text}]")
    if cmd.needs_app:
        # before a trailing command (`run`): any word after it belongs to that command
        last = cmd.arguments[-1][1].get("nargs") if cmd.arguments else None
        place = len(words) - 1 if last == argparse.REMAINDER else len(words)
        words.insert(place, "[-a APP]" if cmd.name != "git:remote" else "-a APP")
    return " ".join(words)


def help_text() -> str:
    lines = ["Usage: berth COMMAND [--json] [-a APP] ...", "", "Commands:"]
    width = max(len(synopsis(c)) for c in COMMANDS.values())
    lines += [f"  {synopsis(c):<{width}}  {c.summary}" for c in COMMANDS.values()]
    lines += [
        f"  {'help [COMMAND]':<{width}}  show this list, or one command's options",
        "",
        "-a APP defaults to the app of the `berth` git remote of the current folder.",
        "--json prints the API's JSON, for scripts. BERTH_URL and BERTH_TOKEN override the stored login.",
    ]
    return "\n".join(lines)


class HelpAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the commands")

    def __call__(self, parser, namespace, values, option_string=None):
        print(help_text())
        parser.exit()


class VersionAction(argparse.Action):
    # argparse's own "version" action takes the text when the parser is made: the package's version would be
    # looked up on every run, not only for --version
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"berth {package_version()}")
        parser.exit()


def command_word(argv: list[str]) -> str | None:
    """The command `argv` names (its first word that is not an option), or None for `--help`, `--version` or none."""
    for word in argv:
        if word in ("-h", "--help", "--version"):
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> Parser:
    """The command line's parser. Given the `argv` it will parse, only the subparser of the command it names is made:
    argparse makes each of the ~110 in ~0.4 ms (~45 ms of every run, a quarter of a command's CPU before it
    speaks to the server); `help`, a mistyped command or none get them all, for the list and the error."""
    only = command_word(argv) if argv is not None else None
    if only not in COMMANDS:
        only = None
    parser = Parser(prog="berth", add_help=False)
    parser.add_argument("-h", "--help", action=HelpAction)
    parser.add_argument("--version", action=VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    help_parser = subparsers.add_parser("help", help="show the commands")
    help_parser.add_argument("topic", nargs="?", metavar="COMMAND")
    for cmd in COMMANDS.values():
        if only is not None and cmd.name != only:
            continue
        sub = subparsers.add_parser(cmd.name, help=cmd.summary, description=cmd.summary)
        for flags, options in cmd.arguments:
            sub.add_argument(*flags, **options)
        if cmd.needs_app:
            sub.add_argument(
                "-a", "--app", required=cmd.name == "git:remote", help="default: the `berth` git remote"
            )
        sub.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
        sub.set_defaults(run=cmd.run)
    return parser


def package_version() -> str:
    # installed with the server ("berth"), on its own ("berth-cli", deploy/cli), or the one-file download (neither).
    # Imported here, for --version only: importlib.metadata takes ~50 ms of CPU to import, every other command none
    from importlib import metadata

    for distribution in ("berth", "berth-cli"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    # a config value the terminal's encoding cannot show becomes `?`, never a UnicodeEncodeError traceback
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = parser.parse_args(argv)
            if args.command in (None, "help"):
                topic = getattr(args, "topic", None)
                if topic and topic not in COMMANDS:
                    raise UsageError(f"unknown command {topic!r}; `berth help` lists them")
                if topic:
                    parser.parse_args([topic, "--help"])  # argparse prints it and exits 0
                print(help_text())
                return 0
        except SystemExit as exc:  # --help and --version end parsing this way
            return exc.code or 0
        if COMMANDS[args.command].needs_app and not args.app:
            args.app = app_from_git_remote()
            if not args.app:
                raise UsageError(
                    "no app given: pass -a APP, or run this in a git repository with a `berth` remote "
                    "(`berth git:remote -a APP`)"
                )
        data, text = args.run(args)
        if args.json or text:  # an empty config prints nothing, not a blank line
            print(json.dumps(data, indent=2) if args.json else text)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except EOFError:
        print("error: no input to read (pass the value as an option instead)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `berth releases | head -1`: the reader left early. Point stdout at /dev/null so the flush at exit
        # does not complain either (the recipe from Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug here or an answer we did not expect: still one line, never a traceback
        print(f"error: unexpected {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        return 1
    return getattr(args, "exit_code", 0)  # `run` exits with its command's exit code


if __name__ == "__main__":
    sys.exit(main())
