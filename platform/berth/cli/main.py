"""`berth`: a thin Heroku-style command line over the REST API v1.

Each command is one function registered in COMMANDS with its arguments. It returns what it got from the API
(printed as JSON with `--json`, for scripts) and the text a person reads (aligned tables, like heroku).
Every failure is one `error: ...` line on stderr and exit code 1 (2 for a wrong command line).
Commands that follow a build or a run print its lines as they arrive and return an empty text; `run` sets
`args.exit_code` so that `berth run` exits with its command's exit code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from berth.cli.client import (
    ApiError,
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
from berth.cli.logs import EVENTS_ARGS, LOGS_ARGS, events, logs
from berth.cli.nodes import NODE_COMMANDS
from berth.cli.output import fields, table

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
        ["ID", "NAME", "CREATED", "LAST USED", "EXPIRES"],
        lambda r: [
            r["id"],
            r["name"],
            when(r["created_at"]),
            when(r.get("last_used_at")),
            when(r.get("expires_at")) or "never",
        ],
        empty="You have no API tokens.",
    )


def days(text: str) -> int:
    """`30d` or `30`: a token's lifetime in whole days (what the API takes)."""
    match = re.fullmatch(r"([0-9]{1,4})d?", text.strip())
    if not match or not 1 <= int(match.group(1)) <= 3650:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days from 1 to 3650, e.g. 30d")
    return int(match.group(1))


@command(
    "tokens:create",
    "create an API token (for CI: BERTH_URL + BERTH_TOKEN)",
    arg("name"),
    arg(
        "--expires-in",
        metavar="DAYS",
        type=days,
        help="valid for this long, e.g. 30d (default: until revoked)",
    ),
)
def tokens_create(args):
    body = {"name": args.name}
    if args.expires_in is not None:
        body["expires_in_days"] = args.expires_in
    token = api().post("/api/v1/tokens", body)
    until = f", valid until {when(token['expires_at'])}" if token.get("expires_at") else ""
    return (
        token,
        f"Created token {token['name']} (id {token['id']}{until}); it is shown only now:\n{token['token']}",
    )


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


UNSET = object()  # a quota option not given (None is `default`)


def quota_value(text: str) -> int | None:
    """A quota on the command line: a whole number (0: no limit) or `default` (the installation's)."""
    if text == "default":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: no limit) or `default`")
    return int(text)


@command(
    "teams:quotas",
    "show a team's quotas and usage; set them with --apps/--replicas/--memory (platform admins)",
    arg("team", nargs="?", metavar="TEAM", help="default: your only team"),
    arg(
        "--apps",
        type=quota_value,
        default=UNSET,
        metavar="N",
        help="apps (0: no limit, `default`: the installation's)",
    ),
    arg("--replicas", type=quota_value, default=UNSET, metavar="N", help="containers over all apps"),
    arg(
        "--memory",
        type=quota_value,
        default=UNSET,
        metavar="MB",
        help="MB of memory: replicas x each process's limit",
    ),
)
def teams_quotas(args):
    client = api()
    team = resolve_team(client, args.team)
    given = {"apps": args.apps, "replicas": args.replicas, "memory_mb": args.memory}
    # an option left out is not sent; `default` is sent as null
    changes = {key: value for key, value in given.items() if value is not UNSET}
    if changes:
        answer = client.patch(f"/api/v1/teams/{segment(team)}/quotas", changes)
    else:
        answer = client.get(f"/api/v1/teams/{segment(team)}/quotas")
    rows = [{"quota": name, **values} for name, values in answer["quotas"].items()]
    return answer, f"=== {answer['team']} quotas\n" + table(
        rows,
        ["QUOTA", "LIMIT", "USED", "SET FOR THE TEAM"],
        lambda r: [
            r["quota"],
            r["limit"] or "no limit",
            r["usage"],
            "default" if r["own"] is None else r["own"],
        ],
        empty="",
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
    # git asks this CLI for the token when it talks to the server, as Heroku's netrc does: no token in .git/config
    helper = git(
        "config", f"credential.{client.url}.helper", f"!{shlex.quote(berth_executable())} git:credentials"
    )
    if helper.returncode != 0:
        raise CliError(f"git config failed: {helper.stderr.strip()}")
    return {"remote": "berth", "url": url}, f"Set git remote berth to {url}"


def berth_executable() -> str:
    path = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return path if os.path.basename(path) == "berth" and os.access(path, os.X_OK) else "berth"


@command(
    "git:credentials",
    "git credential helper: answers git with your token (set up by git:remote)",
    arg("operation"),
)
def git_credentials(args):
    if args.operation != "get":
        return {}, ""  # store / erase: the token is managed by `berth login`, not by git
    asked = {}
    for line in sys.stdin:
        if not line.strip():
            break
        key, _, value = line.rstrip("\n").partition("=")
        asked[key] = value
    credentials = current_credentials()
    server = credentials.url.split("://", 1)[1].split("/", 1)[0]
    if asked.get("host") and asked["host"] != server:
        return {}, ""  # not our server: let git ask someone else
    return {}, f"username=berth\npassword={credentials.token}"


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


@command(
    "ps:restart",
    "restart an app's processes, all or one type, without dropping requests",
    arg("process", nargs="?", metavar="TYPE"),
    needs_app=True,
)
def ps_restart(args):
    body = {"process": args.process} if args.process else {}
    answer = api().post(app_path(args, "/ps/restart"), body)
    what = args.process or "all processes"
    return answer, f"Restarting {what} of {args.app}: new processes start beside the old ones, then take over"


# `heroku restart` and `dokku ps:restart` both exist: people type either
command(
    "restart",
    "restart an app's processes (same as ps:restart)",
    arg("process", nargs="?", metavar="TYPE"),
    needs_app=True,
)(ps_restart)


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
    client = api()
    before = client.get(app_path(args, "/config"))
    values = client.patch(app_path(args, "/config"), dict.fromkeys(args.keys))
    return values, "\n".join(
        f"Unset {key} on {args.app}" if key in before else f"{key} was not set on {args.app}"
        for key in args.keys
    )


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
    number = release_number(args.version)  # a bad version is a usage error before any request
    release = api().get(app_path(args, f"/releases/{number}"))
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


# --- builds and deploys -----------------------------------------------------------------------------------------

ACTIVE_BUILD = ("queued", "building")


def build_source(build: dict) -> str | None:
    if build.get("source") == "image":
        return build.get("image_ref")
    sha = (build.get("git_sha") or "")[:7]
    return " ".join(part for part in (build.get("git_ref"), sha) if part) or None


def build_problem(build: dict) -> str:
    """`build 7 failed: <reason>`; reasons are stored as log lines (`error: ...`), the prefix is ours to add."""
    status = build["status"]
    reason = (build.get("status_reason") or "").removeprefix("error: ").strip()
    if reason.lower() in (status, f"build {status}"):
        reason = ""  # "build 4 cancelled: cancelled" says nothing more
    return f"build {build['id']} {status}" + (f": {reason}" if reason else "")


def echo(line: str) -> None:
    # flushed line by line: piped into `tee` or a CI log, the output must still appear as it happens
    print(line, flush=True)


def follow_build(client: Client, args: argparse.Namespace, build_id: int) -> dict:
    """Print a build's lines as they arrive (a finished build's kept log at once) and return the finished build.

    The exit status is the build's: anything but `succeeded` is one `error: build N failed: <reason>` line.
    """
    path = app_path(args, f"/builds/{segment(build_id)}")
    build = client.get(path)
    if build["status"] in ACTIVE_BUILD:
        try:
            for line in client.lines(f"{path}/output"):
                if not args.json:
                    echo(line)
        except KeyboardInterrupt:
            raise Interrupted(
                f"stopped following build {build_id}; it goes on (`berth builds:output {build_id}` to follow it "
                f"again, `berth builds:cancel {build_id}` to stop it)"
            ) from None
        build = client.get(path)
    elif not args.json:
        # a finished build's stream may have expired; its log is kept on the row
        for line in (build.get("log") or "").splitlines():
            echo(line)
        echo(f"[build {build['id']} {build['status']}]")
    if build["status"] in ACTIVE_BUILD:
        raise CliError(
            f"the output of build {build_id} ended while it was still {build['status']}; "
            f"follow it again with `berth builds:output {build_id}`"
        )
    if build["status"] != "succeeded":
        raise CliError(build_problem(build))
    return build


@command("builds", "list an app's builds, newest first", needs_app=True)
def builds(args):
    rows = api().get(app_path(args, "/builds"))
    return rows, table(
        rows,
        ["ID", "STATUS", "SOURCE", "RELEASE", "BY", "CREATED"],
        lambda r: [
            r["id"],
            r["status"],
            build_source(r),
            version_label(r.get("release")),
            r.get("created_by"),
            when(r["created_at"]),
        ],
        empty=f"{args.app} has no builds yet.",
    )


@command("builds:info", "show one build and its log", arg("id", metavar="ID", type=int), needs_app=True)
def builds_info(args):
    build = api().get(app_path(args, f"/builds/{segment(args.id)}"))
    block = fields(
        f"{args.app} build {build['id']}",
        {
            "Status": build["status"],
            "Reason": build.get("status_reason"),
            "Source": f"{build.get('source')} {build_source(build) or ''}".strip(),
            "Buildpack": build.get("buildpack"),
            "Image": build.get("image"),
            "Release": version_label(build.get("release")),
            "By": build.get("created_by"),
            "Created": when(build.get("created_at")),
            "Started": when(build.get("started_at")),
            "Finished": when(build.get("finished_at")),
        },
    )
    log = build.get("log") or ""
    return build, block + ("\n\n=== log\n" + log.rstrip("\n") if log else "")


@command(
    "builds:output",
    "print a build's output, live while it runs; exit 1 unless it succeeds",
    arg("id", metavar="ID", type=int),
    needs_app=True,
)
def builds_output(args):
    build = follow_build(api(), args, args.id)
    return build, ""


@command(
    "builds:cancel", "cancel a queued or running build", arg("id", metavar="ID", type=int), needs_app=True
)
def builds_cancel(args):
    build = api().post(app_path(args, f"/builds/{segment(args.id)}/cancel"), {})
    if build["status"] in ACTIVE_BUILD:
        # a running build is stopped by its worker, which checks between steps
        return build, f"Cancelling build {build['id']} of {args.app}; its worker stops it shortly"
    return build, f"Cancelled build {build['id']} of {args.app}"


@command(
    "deploy",
    "deploy an image and follow its build; exit 1 unless it succeeds",
    arg("--image", required=True, metavar="REF", help="e.g. registry.example.com:5000/shop:1.4"),
    needs_app=True,
)
def deploy(args):
    client = api()
    build = client.post(app_path(args, "/deploys"), {"image": args.image})
    if not args.json:
        echo(f"Deploying {build.get('image_ref') or args.image} to {args.app} (build {build['id']})")
    build = follow_build(client, args, build["id"])
    return build, f"Deployed {args.app} v{build['release']}" if build.get("release") else ""


# --- rollback ---------------------------------------------------------------------------------------------------

ROLLING_OUT = ("pending", "built", "deploying")


def release_number(text: str) -> int:
    number = text.lower().removeprefix("v")
    if not number.isdigit():
        raise UsageError(f"{text!r} is not a release version like v3 or 3")
    return int(number)


def previous_release(client: Client, args: argparse.Namespace) -> int:
    """The release before the current one, as `heroku rollback` without a version picks. The current one is the
    newest live or still rolling out (a config change a moment ago): undoing it goes to what served before."""
    releases = client.get(app_path(args, "/releases"))
    current = next(
        (r["version"] for r in releases if r["status"] == "live" or r["status"] in ROLLING_OUT), None
    )
    if current is None:
        raise CliError(f"{args.app} has no live release to roll back from; name one: berth rollback vN")
    earlier = [
        r
        for r in releases
        if r["version"] < current and r["status"] in ("live", "superseded") and r.get("image")
    ]
    if not earlier:
        raise CliError(f"{args.app} has no release before v{current} to roll back to")
    return max(r["version"] for r in earlier)


@command(
    "rollback",
    "roll back to an earlier release's image and config (default: the one before the live one); waits until live",
    arg("version", metavar="vN", nargs="?"),
    arg("--no-wait", action="store_true", help="return once the release is made, without waiting for it"),
    arg("--timeout", type=float, default=900.0, metavar="SECONDS", help="how long to wait (default 900)"),
    needs_app=True,
)
def rollback(args):
    target = release_number(args.version) if args.version else None  # bad words fail before any request
    client = api()
    if target is None:
        target = previous_release(client, args)
    release = client.post(app_path(args, "/rollback"), {"version": target})
    version = release["version"]
    made = f"Rolled back {args.app} to v{target} as v{version}"
    if args.no_wait:
        return release, f"{made} ({release['status']}); watch it with `berth releases:info v{version}`"
    if not args.json:
        echo(f"{made}; waiting for it to go live...")
    deadline = time.monotonic() + args.timeout
    while release["status"] in ROLLING_OUT:
        if time.monotonic() >= deadline:
            raise CliError(
                f"v{version} is still {release['status']} after {args.timeout:g} s; "
                f"watch it with `berth releases:info v{version}`"
            )
        time.sleep(1)
        release = client.get(app_path(args, f"/releases/{version}"))
    if release["status"] != "live":
        raise CliError(
            f"v{version} did not go live (status {release['status']}); the previous release serves on"
        )
    return release, f"v{version} is live"


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
    return getattr(args, "exit_code", 0)  # `run` exits with its command's exit code


if __name__ == "__main__":
    sys.exit(main())
