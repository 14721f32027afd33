"""`berth`: a thin Heroku-style command line over the REST API v1.

Each command is one function registered in COMMANDS with its arguments. It returns what it got from the API
(printed as JSON with `--json`, for scripts) and the text a person reads (aligned tables, like heroku).
Every failure is one `error: ...` line on stderr and exit code 1 (2 for a wrong command line).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from berth.cli.client import (
    Client,
    CliError,
    Credentials,
    UsageError,
    app_from_git_remote,
    current_credentials,
    delete_credentials,
    git,
    load_credentials,
    normalize_url,
    save_credentials,
    segment,
)

ROLES = ("owner", "admin", "member", "viewer")
CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Output = tuple[Any, str]  # (the API's JSON for --json, the text for people)

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
    return Client(credentials.url, credentials.token)


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


def table(rows: list[dict], headers: list[str], cells: Callable[[dict], list], *, empty: str) -> str:
    """Aligned columns under an underlined header, like `heroku apps`; `-` for a missing value."""
    if not rows:
        return empty
    lines = [headers] + [["-" if c in (None, "") else str(c) for c in cells(row)] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    lines.insert(1, ["-" * width for width in widths])
    return "\n".join(
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def fields(title: str, items: dict[str, Any]) -> str:
    """A titled block of `Key: value` lines, like `heroku apps:info`."""
    width = max(len(key) for key in items) + 1
    lines = [f"{key + ':':<{width}}  {'-' if value in (None, '') else value}" for key, value in items.items()]
    return "\n".join([f"=== {title}", *lines])


def assignments(words: list[str], what: str) -> dict[str, str]:
    """Parse KEY=VALUE words (the value may contain `=`); a malformed word is a usage error."""
    parsed: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not CONFIG_KEY.match(key):
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
        Client(credentials.url, credentials.token).delete(f"/api/v1/tokens/{segment(credentials.token_id)}")
    except CliError as exc:
        return str(exc)
    return None


# --- auth and tokens --------------------------------------------------------------------------------------------


@command(
    "login",
    "log in; the token is kept in ~/.config/berth/credentials.json",
    arg("--url", help="the Berth server, e.g. https://berth.example.com"),
    arg("--username", metavar="NAME", help="prompted for when missing"),
    arg("--password", metavar="PASS", help="prompted for (hidden) when missing"),
)
def login(args):
    stored = load_credentials()
    url = args.url or os.environ.get("BERTH_URL") or (stored.url if stored else None) or prompt("Berth URL: ")
    url = normalize_url(url)
    username = args.username or prompt("Username: ")
    password = args.password or read_password()
    body = {"username": username, "password": password, "name": f"berth-cli@{socket.gethostname()}"}
    token = Client(url).post("/api/v1/auth/token", body)
    path = save_credentials(Credentials(url=url, token=token["token"], token_id=token.get("id")))
    if stored and stored.url == url and stored.token_id is not None:
        revoke_quietly(stored)  # logging in again replaces this machine's token instead of piling them up
    return {"url": url, "username": username}, f"Logged in to {url} as {username} (token saved in {path})"


@command("logout", "revoke this machine's token on the server and forget it")
def logout(args):
    stored = load_credentials()
    if stored is None:
        raise CliError("not logged in (no stored credentials)")
    problem = revoke_quietly(stored) if stored.token_id is not None else None
    # logging out must work offline too; say what was left behind
    note = f"; the token could not be revoked on the server ({problem})" if problem else ""
    delete_credentials()
    return {"url": stored.url, "revoked": not note}, f"Logged out of {stored.url}{note}"


@command("whoami", "show who you are logged in as")
def whoami(args):
    me = api().get("/api/v1/me")
    return me, me["username"]


@command("tokens", "list your API tokens")
def tokens(args):
    rows = api().get("/api/v1/tokens")
    return rows, table(
        rows,
        ["ID", "NAME", "CREATED", "LAST USED"],
        lambda r: [r["id"], r["name"], when(r["created_at"]), when(r.get("last_used_at"))],
        empty="You have no API tokens.",
    )


@command("tokens:create", "create an API token (for CI: BERTH_URL + BERTH_TOKEN)", arg("name"))
def tokens_create(args):
    token = api().post("/api/v1/tokens", {"name": args.name})
    return token, f"Created token {token['name']} (id {token['id']}); it is shown only now:\n{token['token']}"


@command("tokens:revoke", "revoke an API token", arg("id", metavar="ID", type=int))
def tokens_revoke(args):
    api().delete(f"/api/v1/tokens/{segment(args.id)}")
    return {"revoked": args.id}, f"Revoked token {args.id}"


# --- teams ------------------------------------------------------------------------------------------------------


@command("teams", "list your teams and your role in each")
def teams(args):
    rows = api().get("/api/v1/teams")
    return rows, table(
        rows,
        ["NAME", "ROLE", "CREATED"],
        lambda r: [r["name"], r["role"], when(r["created_at"])],
        empty="You are in no team yet; create one with `berth teams:create NAME`.",
    )


@command("teams:create", "create a team (you become its owner)", arg("name"))
def teams_create(args):
    team = api().post("/api/v1/teams", {"name": args.name})
    return team, f"Created team {team['name']}; you are its owner"


@command("members", "list a team's members", TEAM)
def members(args):
    client = api()
    team = resolve_team(client, args.team)
    rows = client.get(f"/api/v1/teams/{segment(team)}/members")
    return rows, table(
        rows,
        ["USERNAME", "EMAIL", "ROLE"],
        lambda r: [r["username"], r["email"], r["role"]],
        empty=f"Team {team} has no members.",
    )


@command(
    "members:add",
    "add an existing user to a team (admin+)",
    arg("user", metavar="EMAIL", help="an email address or a username"),
    arg("--role", required=True, choices=ROLES),
    TEAM,
)
def members_add(args):
    client = api()
    team = resolve_team(client, args.team)
    body = {"email" if "@" in args.user else "username": args.user, "role": args.role}
    member = client.post(f"/api/v1/teams/{segment(team)}/members", body)
    return member, f"Added {member.get('username', args.user)} to {team} as {member.get('role', args.role)}"


@command("members:remove", "remove a user from a team (admin+)", arg("user", metavar="USER"), TEAM)
def members_remove(args):
    client = api()
    team = resolve_team(client, args.team)
    client.delete(f"/api/v1/teams/{segment(team)}/members/{segment(args.user)}")
    return {"team": team, "removed": args.user}, f"Removed {args.user} from {team}"


@command("audit", "show a team's audit log, newest first (admin+)", TEAM)
def audit(args):
    client = api()
    team = resolve_team(client, args.team)
    rows = client.get(f"/api/v1/teams/{segment(team)}/audit")
    return rows, table(
        rows,
        ["WHEN", "ACTOR", "ACTION", "TARGET", "FROM"],
        lambda r: [when(r["created_at"]), r["actor"], r["action"], r["target"], r.get("remote_addr")],
        empty=f"Nothing in {team}'s audit log yet.",
    )


# --- apps -------------------------------------------------------------------------------------------------------


@command("apps", "list the apps of all your teams")
def apps(args):
    rows = api().get("/api/v1/apps")
    return rows, table(
        rows,
        ["NAME", "TEAM", "RELEASE", "URL"],
        lambda r: [r["name"], r["team"], version_label(r["current_release"]), r["url"]],
        empty="You have no apps; create one with `berth apps:create NAME`.",
    )


@command("apps:create", "create an app", arg("name"), TEAM)
def apps_create(args):
    body = {"name": args.name} | ({"team": args.team} if args.team else {})
    app = api().post("/api/v1/apps", body)
    return app, (
        f"Created {app['name']} in team {app['team']}: {app['url']}\n"
        f"Deploy it with: berth git:remote -a {app['name']} && git push berth main"
    )


@command("apps:info", "show an app's settings, domains and formation", needs_app=True)
def apps_info(args):
    app = api().get(app_path(args))
    return app, fields(
        app["name"],
        {
            "Team": app["team"],
            "URL": app["url"],
            "Release": version_label(app["current_release"]),
            "Deploy branch": app.get("deploy_branch"),
            "Health check": app.get("health_check_path"),
            "Buildpack": app.get("buildpack"),
            "Domains": ", ".join(app.get("domains") or []),
            "Formation": ", ".join(f"{f['process']}={f['replicas']}" for f in app.get("formation") or []),
            "Created": when(app["created_at"]),
        },
    )


@command(
    "apps:destroy",
    "delete an app and everything it runs (admin+)",
    arg("name"),
    arg("--confirm", metavar="NAME", help="the app's name again"),
)
def apps_destroy(args):
    if args.confirm != args.name:
        raise CliError(f"this deletes {args.name} for good; to proceed, add --confirm {args.name}")
    api().delete(f"/api/v1/apps/{segment(args.name)}")
    return {"destroyed": args.name}, f"Destroyed {args.name}"


@command("git:remote", "add or update the `berth` git remote of the repository here", needs_app=True)
def git_remote(args):
    inside = git("rev-parse", "--git-dir")
    if inside is None:
        raise CliError("git is not installed")
    if inside.returncode != 0:
        raise CliError("not in a git repository; run `git init` first")
    client = api()
    client.get(app_path(args))  # a typo in the name should fail here, not at the first push
    url = f"{client.url}/git/{args.app}.git"
    exists = git("remote", "get-url", "berth").returncode == 0
    result = git("remote", "set-url" if exists else "add", "berth", url)
    if result.returncode != 0:
        raise CliError(f"git remote failed: {result.stderr.strip()}")
    return {"remote": "berth", "url": url}, f"Set git remote berth to {url}"


@command(
    "ps:scale",
    "set how many processes of each type run",
    arg("sizes", nargs="+", metavar="PROCESS=COUNT"),
    needs_app=True,
)
def ps_scale(args):
    body = []
    for word in args.sizes:
        process, _, count = word.partition("=")
        if not process or not count.isdigit():
            raise UsageError(f"{word!r} is not PROCESS=COUNT (like web=2)")
        body.append({"process": process, "replicas": int(count)})
    rows = api().patch(app_path(args, "/formation"), body)
    return rows, table(
        rows,
        ["PROCESS", "REPLICAS", "MEMORY", "CPU"],
        lambda r: [r["process"], r["replicas"], r.get("memory_mb") and f"{r['memory_mb']} MB", r.get("cpu")],
        empty="No process types yet.",
    )


# --- config -----------------------------------------------------------------------------------------------------


@command("config", "show an app's config vars as KEY=VALUE lines", needs_app=True)
def config(args):
    values = api().get(app_path(args, "/config"))
    return values, "\n".join(f"{key}={value}" for key, value in sorted(values.items()))


@command("config:get", "print one config var's value", arg("key"), needs_app=True)
def config_get(args):
    values = api().get(app_path(args, "/config"))
    if args.key not in values:
        raise CliError(f"{args.key} is not set on {args.app}")
    return {args.key: values[args.key]}, values[args.key]


@command(
    "config:set",
    "set config vars (one new release)",
    arg("pairs", nargs="+", metavar="KEY=VALUE"),
    needs_app=True,
)
def config_set(args):
    changes = assignments(args.pairs, "KEY=VALUE (KEY: letters, digits and _, not starting with a digit)")
    values = api().patch(app_path(args, "/config"), changes)
    return values, "\n".join(f"Set {key} on {args.app}" for key in changes)


@command(
    "config:unset",
    "remove config vars (one new release)",
    arg("keys", nargs="+", metavar="KEY"),
    needs_app=True,
)
def config_unset(args):
    values = api().patch(app_path(args, "/config"), dict.fromkeys(args.keys))
    return values, "\n".join(f"Unset {key} on {args.app}" for key in args.keys)


# --- domains ----------------------------------------------------------------------------------------------------


@command("domains", "list an app's custom domains", needs_app=True)
def domains(args):
    rows = api().get(app_path(args, "/domains"))
    return rows, table(
        rows,
        ["HOSTNAME", "ADDED"],
        lambda r: [r["hostname"], when(r["created_at"])],
        empty=f"{args.app} has no custom domains.",
    )


@command("domains:add", "route a hostname to an app", arg("hostname"), needs_app=True)
def domains_add(args):
    domain = api().post(app_path(args, "/domains"), {"hostname": args.hostname})
    return domain, f"Added {domain.get('hostname', args.hostname)} to {args.app}"


@command("domains:remove", "stop routing a hostname to an app", arg("hostname"), needs_app=True)
def domains_remove(args):
    api().delete(app_path(args, f"/domains/{segment(args.hostname)}"))
    return {"removed": args.hostname}, f"Removed {args.hostname} from {args.app}"


# --- releases ---------------------------------------------------------------------------------------------------


@command("releases", "list an app's releases, newest first", needs_app=True)
def releases(args):
    rows = api().get(app_path(args, "/releases"))
    return rows, table(
        rows,
        ["VERSION", "STATUS", "DESCRIPTION", "BY", "CREATED"],
        lambda r: [
            version_label(r["version"]),
            r.get("status"),
            r.get("description"),
            r.get("created_by"),
            when(r["created_at"]),
        ],
        empty=f"{args.app} has no releases yet.",
    )


@command("releases:info", "show one release", arg("version", metavar="vN"), needs_app=True)
def releases_info(args):
    number = args.version.removeprefix("v")
    if not number.isdigit():
        raise UsageError(f"{args.version!r} is not a release version like v3 or 3")
    release = api().get(app_path(args, f"/releases/{int(number)}"))
    procfile = release.get("procfile") or {}
    if isinstance(procfile, dict):
        procfile = ", ".join(f"{name}: {cmd}" for name, cmd in procfile.items())
    return release, fields(
        f"{args.app} v{release['version']}",
        {
            "Status": release.get("status"),
            "Description": release.get("description"),
            "Image": release.get("image"),
            "By": release.get("created_by"),
            "Created": when(release["created_at"]),
            "Config keys": ", ".join(release.get("config_keys") or []),
            "Procfile": procfile,
        },
    )


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
            words.append(metavar + (" ..." if options.get("nargs") == "+" else ""))
        else:
            flag = flags[-1]
            text = f"{flag} {metavar or flag.lstrip('-').upper()}"
            words.append(text if options.get("required") else f"[{text}]")
    if cmd.needs_app:
        words.append("[-a APP]" if cmd.name != "git:remote" else "-a APP")
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


def build_parser() -> Parser:
    parser = Parser(prog="berth", add_help=False)
    parser.add_argument("-h", "--help", action=HelpAction)
    parser.add_argument("--version", action="version", version=f"berth {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    help_parser = subparsers.add_parser("help", help="show the commands")
    help_parser.add_argument("topic", nargs="?", metavar="COMMAND")
    for cmd in COMMANDS.values():
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
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    # a config value the terminal's encoding cannot show becomes `?`, never a UnicodeEncodeError traceback
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    parser = build_parser()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
