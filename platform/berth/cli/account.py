"""`berth login`, tokens, teams, members, quotas and the audit log."""

from __future__ import annotations

import argparse
import os
import re
import socket

from berth.cli.client import (
    Client,
    CliError,
    Credentials,
    UsageError,
    ca_bundle_for,
    delete_credentials,
    load_credentials,
    normalize_url,
    save_credentials,
    segment,
    tls_verification,
)
from berth.cli.commands import (
    ROLES,
    TEAM,
    api,
    arg,
    command,
    prompt,
    read_password,
    resolve_team,
    revoke_quietly,
    when,
)
from berth.cli.output import table

# --- auth and tokens --------------------------------------------------------------------------------------------


@command(
    "login",
    "log in; the token is kept in ~/.config/berth/credentials.json",
    arg("server", nargs="?", metavar="URL", help="the Berth server, e.g. https://berth.example.com"),
    arg("--url", help="the same as URL"),
    arg(
        "--ca-bundle",
        metavar="FILE",
        help="PEM file of the CAs that sign the server's certificate (a private CA); kept for later commands",
    ),
    arg("--username", metavar="NAME", help="prompted for when missing"),
    arg("--password", metavar="PASS", help="prompted for (hidden) when missing"),
)
def login(args):
    if args.server and args.url and normalize_url(args.server) != normalize_url(args.url):
        raise UsageError(f"two different server URLs given: {args.server} and --url {args.url}")
    stored = load_credentials()
    url = (
        args.server
        or args.url
        or os.environ.get("BERTH_URL")
        or (stored.url if stored else None)
        or prompt("Berth URL: ")
    )
    url = normalize_url(url)
    # --ca-bundle, else BERTH_CA_BUNDLE, else the one of the last login to this server; an absolute path is stored
    # so that later commands find it from any folder
    chosen = args.ca_bundle or ca_bundle_for(url, stored)
    ca_bundle = os.path.abspath(chosen) if chosen else None
    tls_verification(ca_bundle)  # an unreadable bundle fails before the password is asked for
    username = args.username or prompt("Username: ")
    password = args.password or read_password()
    body = {"username": username, "password": password, "name": f"berth-cli@{socket.gethostname()}"}
    token = Client(url, ca_bundle=ca_bundle).post("/api/v1/auth/token", body)
    path = save_credentials(
        Credentials(url=url, token=token["token"], token_id=token.get("id"), ca_bundle=ca_bundle)
    )
    if stored and stored.url == url and stored.token_id is not None:
        revoke_quietly(stored)  # logging in again replaces this machine's token instead of piling them up
    trusted = f"; the server's certificate is checked against {ca_bundle}" if ca_bundle else ""
    return (
        {"url": url, "username": username, "ca_bundle": ca_bundle},
        f"Logged in to {url} as {username} (token saved in {path}){trusted}",
    )


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
