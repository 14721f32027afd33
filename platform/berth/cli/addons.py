"""`berth addons…`, `pg:…`, `redis:cli`: a team's PostgreSQL and Redis servers, attached to apps as config vars
(DATABASE_URL, REDIS_URL or <AS>_URL). Attaching, detaching and rotating change config vars: each is a release
that rolls the app, as `config:set` does."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import httpx

from berth.cli.client import Client, CliError, current_credentials, segment
from berth.cli.commands import api, app_path, arg, command
from berth.cli.output import table

KINDS = ("postgres", "redis")
ADDON = arg("addon", metavar="ADDON", help="the add-on's name (see `berth addons`)")
AS = arg("--as", dest="as_name", metavar="NAME", help="the config var is NAME_URL")
# provisioning (initdb), a rotation (a restart) and a client run take longer than the client's usual 30 s
SLOW_TIMEOUT_S = 300.0


def _slow_api() -> Client:
    credentials = current_credentials()
    return Client(credentials.url, credentials.token, ca_bundle=credentials.ca_bundle, timeout=SLOW_TIMEOUT_S)


def _addon_path(args, suffix: str = "") -> str:
    return app_path(args, f"/addons/{segment(args.addon)}{suffix}")


def _attached(addon: dict) -> str:
    return ", ".join(f"{a['app']} as {a['config_var']}" for a in addon["attachments"]) or "-"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:.1f} MB"


@command(
    "addons",
    "list the add-ons attached to an app (--all: all of its team's)",
    arg("--all", action="store_true", help="every add-on of the app's team"),
    needs_app=True,
)
def addons(args):
    rows = api().get(app_path(args, "/addons" + ("?all=1" if args.all else "")))
    return rows, table(
        rows,
        ["NAME", "KIND", "PLAN", "ATTACHED"],
        lambda a: [a["name"], a["kind"], a["plan"], _attached(a)],
        empty="No add-ons; create one with `berth addons:create postgres -a APP`.",
    )


@command(
    "addons:create",
    "provision a PostgreSQL or Redis server for the app's team and attach it to the app",
    arg("kind", choices=KINDS),
    AS,
    arg("--name", help="the add-on's name (default: KIND-xxxxxx)"),
    arg("--plan", default="small", help="small (256 MB) or medium (1 GB)"),
    arg("--from-backup", dest="from_backup", metavar="ID", help="a copy of this backup (b001 or ADDON/b001)"),
    arg(
        "--node",
        help="the Swarm node (hostname) to pin it to; it needs the add-on image (default: Berth's node)",
    ),
    needs_app=True,
)
def addons_create(args):
    body = {"kind": args.kind, "plan": args.plan}
    body |= {"node": args.node} if args.node else {}
    body |= {"as": args.as_name} if args.as_name else {}
    body |= {"name": args.name} if args.name else {}
    body |= {"from_backup": args.from_backup} if args.from_backup else {}
    addon = _slow_api().post(app_path(args, "/addons"), body)
    copied = f" with the data of backup {args.from_backup}" if args.from_backup else ""
    return addon, f"Created {addon['name']} ({addon['kind']}){copied}, attached to {_attached(addon)}"


@command("addons:info", "an add-on's version, data size, connections and node", ADDON, needs_app=True)
def addons_info(args):
    addon = api().get(_addon_path(args))
    lines = [
        f"=== {addon['name']} ({addon['kind']}, plan {addon['plan']})",
        f"Version:      {addon['version'] or '-'}",
        f"State:        {'running' if addon['running'] else 'not running'}",
        f"Data size:    {_size(addon['size_bytes'])}",
        f"Connections:  {addon['connections'] if addon['connections'] is not None else '-'}",
        f"Node:         {addon['node'] or '-'}",
        f"Attached to:  {_attached(addon)}",
        f"Created:      {addon['created_at']}",
    ]
    schedule = addon.get("backup_schedule")
    lines.append(
        f"Backups:      daily at {schedule['at']}, newest {schedule['keep']} kept"
        if schedule
        else "Backups:      no schedule (`berth pg:backups:schedule --at '02:00 UTC'`)"
    )
    if addon.get("backup_alarm"):
        lines.append(f"ALARM:        {addon['backup_alarm']}")
    return addon, "\n".join(lines)


@command(
    "addons:attach", "give an app of the same team an add-on's URL (a release)", ADDON, AS, needs_app=True
)
def addons_attach(args):
    body = {"as": args.as_name} if args.as_name else {}
    addon = api().post(_addon_path(args, "/attachment"), body)
    var = next(a["config_var"] for a in addon["attachments"] if a["app"] == args.app)
    return addon, f"Attached {addon['name']} to {args.app} as {var}"


@command(
    "addons:detach",
    "take an add-on's config var from an app (a release); its data stays",
    ADDON,
    needs_app=True,
)
def addons_detach(args):
    api().delete(_addon_path(args, "/attachment"))
    return {"detached": args.addon, "app": args.app}, f"Detached {args.addon} from {args.app}"


@command(
    "addons:destroy",
    "take a final backup, detach an add-on from every app and delete its server and its data (admin+)",
    ADDON,
    arg("--confirm", metavar="ADDON", help="the add-on's name again"),
    arg(
        "--no-backup",
        dest="no_backup",
        action="store_true",
        help="no final backup: the data is gone for good",
    ),
    needs_app=True,
)
def addons_destroy(args):
    if args.confirm != args.addon:
        raise CliError(
            f"this deletes {args.addon} and its data for good; to proceed, add --confirm {args.addon}"
        )
    _slow_api().delete(_addon_path(args, "?backup=false" if args.no_backup else ""))
    if args.no_backup:
        return {
            "destroyed": args.addon,
            "backup": None,
        }, f"Destroyed {args.addon} and its data (no backup kept)"
    final = (api().get(_addon_path(args, "/backups")) or [{}])[0]
    return (
        {"destroyed": args.addon, "backup": final.get("name")},
        f"Destroyed {args.addon}; its final backup {args.addon}/{final.get('name')} stays "
        f"(`berth addons:create {final.get('kind', 'postgres')} --from-backup {args.addon}/{final.get('name')}` "
        "brings it back)",
    )


@command(
    "addons:recover",
    "bring back an add-on whose node is lost: a new server on another node, from its newest verified backup (admin+)",
    ADDON,
    arg("--confirm", metavar="ADDON", help="the add-on's name again"),
    arg("--from-backup", dest="from_backup", metavar="ID", help="this backup (default: the newest verified)"),
    arg("--node", help="the node to put it on (default: the node Berth runs on)"),
    needs_app=True,
)
def addons_recover(args):
    if args.confirm != args.addon:
        raise CliError(
            f"this replaces {args.addon}'s server by one holding its backup's data; to proceed, add --confirm {args.addon}"
        )
    body = {"confirm": args.confirm}
    body |= {"backup": args.from_backup} if args.from_backup else {}
    body |= {"node": args.node} if args.node else {}
    done = _slow_api().post(_addon_path(args, "/recover"), body)
    return done, (
        f"Recovered {done['name']} on {done['new_node']} from backup {done['backup']} in {done['seconds']:.1f}s "
        f"({done['old_node']} is left alone); its URL is unchanged"
    )


def _run(args, words: list[str]):
    result = _slow_api().post(_addon_path(args, "/run"), {"args": words})
    if result["timed_out"]:
        raise CliError(f"the client run was stopped after {result['seconds']:.0f} s")
    if result["exit_code"] != 0:
        last = result["output"].strip().splitlines()[-1:] or [f"exit {result['exit_code']}"]
        raise CliError(last[0])
    return result, result["output"]


@command(
    "pg:psql",
    "run SQL with psql in a one-off run on the team's network, as the app connects",
    ADDON,
    arg("-c", "--command", dest="sql", required=True, metavar="SQL"),
    needs_app=True,
)
def pg_psql(args):
    return _run(args, ["-v", "ON_ERROR_STOP=1", "-c", args.sql])


@command(
    "redis:cli",
    "run one redis-cli command in a one-off run on the team's network, as the app connects",
    ADDON,
    arg("words", nargs="+", metavar="WORD"),
    needs_app=True,
)
def redis_cli(args):
    return _run(args, list(args.words))


@command(
    "pg:credentials:rotate",
    "give an add-on a new password; attached apps get the new URL (a release each), the old one is refused",
    ADDON,
    needs_app=True,
)
def pg_credentials_rotate(args):
    rotated = _slow_api().post(_addon_path(args, "/credentials/rotate"), {})
    return (
        rotated,
        f"Rotated the credentials of {rotated['name']} (the server answered again in {rotated['seconds']:.1f} s)",
    )


# --- backups: pg:backups… and the same for Redis as redis:backups… ------------------------------------------------

BACKUP_ID = arg("id", metavar="ID", help="a backup: b001, or ADDON/b001 for another add-on's")
OPTIONAL_ADDON = arg("addon", nargs="?", metavar="ADDON", help="default: the app's only add-on of that kind")
STATE_WORDS = {
    "capturing": "capturing…",
    "captured": "captured, not verified yet",
    "failed": "FAILED",
    "verified": "verified by a restore",
    "verify_failed": "VERIFICATION FAILED",
}


def _kind_of(args) -> str:
    return "redis" if args.command_name.startswith("redis:") else "postgres"


def _one_addon(args) -> str:
    """The ADDON argument, or the app's only attached add-on of the command's kind."""
    if args.addon:
        return args.addon
    kind = _kind_of(args)
    names = [a["name"] for a in api().get(app_path(args, "/addons")) if a["kind"] == kind]
    if len(names) != 1:
        found = f"{len(names)} ({', '.join(names)})" if names else "none"
        raise CliError(f"{args.app} has {found} {kind} add-ons attached; name the add-on (ADDON)")
    return names[0]


def _backup_ref(args) -> tuple[str, str]:
    """(the add-on whose backup it is, the backup id) from ID (b001 or ADDON/b001) and ADDON."""
    if "/" in args.id:
        source, _, backup = args.id.partition("/")
        return source, backup
    return _one_addon(args), args.id


def _backups_path(args, addon: str, suffix: str = "") -> str:
    return app_path(args, f"/addons/{segment(addon)}/backups{suffix}")


def _backup_path(args, addon: str, backup: str, suffix: str = "") -> str:
    return _backups_path(args, addon, f"/{segment(backup)}{suffix}")


def _backup_lines(b: dict) -> list[str]:
    lines = [
        f"=== {b['addon']}/{b['name']} ({b['kind']}, {b['trigger']})",
        f"State:     {STATE_WORDS.get(b['state'], b['state'])}",
        f"Size:      {_size(b['size'])}",
        f"Sha256:    {b['sha256'] or '-'}",
        f"Started:   {b['started_at']}",
        f"Finished:  {b['finished_at'] or '-'}",
        f"Verified:  {b['verified_at'] or '-'}",
    ]
    if b["counts"]:
        counts = ", ".join(
            f"{k} {v[0] if isinstance(v, list) and v[0] == v[1] else v}" for k, v in b["counts"].items()
        )
        lines.append(f"Counted:   {counts}")
    if b["error"]:
        lines.append(f"Error:     {b['error']}")
    return lines


def backups_list(args):
    addon = _one_addon(args)
    rows = api().get(_backups_path(args, addon))
    return rows, table(
        rows,
        ["ID", "STATE", "SIZE", "TRIGGER", "STARTED"],
        lambda b: [
            b["name"],
            STATE_WORDS.get(b["state"], b["state"]),
            _size(b["size"]),
            b["trigger"],
            b["started_at"],
        ],
        empty=f"No backups of {addon}; take one with `berth {_kind_of(args).replace('postgres', 'pg')}:backups:capture "
        f"{addon} -a {args.app}`.",
    )


def backups_capture(args):
    addon = _one_addon(args)
    backup = _slow_api().post(_backups_path(args, addon), {})
    return (
        backup,
        f"Captured {addon}/{backup['name']}: {_size(backup['size'])}, sha256 {backup['sha256'][:16]}…",
    )


def backups_info(args):
    addon, backup = _backup_ref(args)
    found = api().get(_backup_path(args, addon, backup))
    return found, "\n".join(_backup_lines(found))


def backups_verify(args):
    addon, backup = _backup_ref(args)
    found = _slow_api().post(_backup_path(args, addon, backup, "/verify"), {})
    if found["state"] != "verified":
        raise CliError(f"{addon}/{backup} failed its verification: {found['error']}")
    counted = ", ".join(f"{k} {v}" for k, v in found["verify_counts"].items()) or "nothing"
    return found, f"Verified {addon}/{backup} by restoring it into a throwaway server: {counted}"


def backups_download(args):
    addon, backup = _backup_ref(args)
    target = Path(args.output or f"{addon}-{backup}.{'dump' if _kind_of(args) == 'postgres' else 'rdb'}")
    partial = target.with_name(target.name + ".partial")
    client = _slow_api()
    digest = hashlib.sha256()
    size = 0
    path = _backup_path(args, addon, backup, "/download")
    try:
        with client.http.stream("GET", path, timeout=httpx.Timeout(30.0, read=None)) as response:
            if not response.is_success:
                response.read()
                try:
                    data = response.json()
                except ValueError:
                    data = None
                raise client.api_error(response, data, "GET", path)
            expected = response.headers.get("X-Berth-Sha256", "")
            with open(partial, "wb") as f:
                for chunk in response.iter_bytes(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise client.transport_error(exc, "GET", path) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise CliError(f"the download of {addon}/{backup} does not match its checksum; nothing was kept")
    os.replace(partial, target)
    result = {"backup": backup, "addon": addon, "file": str(target), "size": size, "sha256": expected}
    return result, f"Downloaded {addon}/{backup} to {target} ({_size(size)}, sha256 checked)"


def backups_restore(args):
    source, backup = _backup_ref(args)
    into = args.addon or source
    if args.confirm != args.app:
        raise CliError(
            f"this replaces the data of {into} (attached to {args.app}) with backup {source}/{backup}; "
            f"to proceed, add --confirm {args.app}"
        )
    meanwhile = (
        "the app's queries on the restored tables wait until it commits"
        if _kind_of(args) == "postgres"
        else "the Redis server is stopped meanwhile: the app's connections are refused"
    )
    print(
        f"Restoring {source}/{backup} into {into}: {meanwhile}; if it fails, nothing changes…",
        file=sys.stderr,
    )
    done = _slow_api().post(_backup_path(args, source, backup, "/restore"), {"into": into})
    return done, (
        f"Restored {source}/{backup} into {into} in {done['seconds']:.1f} s. Meanwhile: {done['note']}"
    )


def backups_schedule(args):
    addon = _one_addon(args)
    schedule = api().put(
        app_path(args, f"/addons/{segment(addon)}/backup-schedule"), {"at": args.at, "keep": args.keep}
    )
    return schedule, (
        f"{addon} is backed up every day at {schedule['at']}, each backup verified by a restore; "
        f"the newest {schedule['keep']} scheduled backups are kept"
    )


def backups_unschedule(args):
    addon = _one_addon(args)
    api().delete(app_path(args, f"/addons/{segment(addon)}/backup-schedule"))
    return {"unscheduled": addon}, f"{addon} has no backup schedule any more (its backups stay)"


def _with_name(run, name: str):
    def named(args):
        args.command_name = name
        return run(args)

    named.__doc__ = run.__doc__
    return named


BACKUP_COMMANDS = [
    ("backups", "list an add-on's backups and their verification", (OPTIONAL_ADDON,), backups_list),
    (
        "backups:capture",
        "take a backup now (streamed to the backup store with its checksum)",
        (OPTIONAL_ADDON,),
        backups_capture,
    ),
    (
        "backups:info",
        "a backup's state, size, checksum, counts and error",
        (BACKUP_ID, OPTIONAL_ADDON),
        backups_info,
    ),
    (
        "backups:verify",
        "restore a backup into a throwaway server and compare what it holds with what was captured",
        (BACKUP_ID, OPTIONAL_ADDON),
        backups_verify,
    ),
    (
        "backups:download",
        "save a backup to a file (streamed; its checksum checked)",
        (BACKUP_ID, OPTIONAL_ADDON, arg("-o", "--output", metavar="FILE", help="default: ADDON-ID.dump")),
        backups_download,
    ),
    (
        "backups:restore",
        "replace an add-on's data with a backup, all or nothing (admin+)",
        (BACKUP_ID, OPTIONAL_ADDON, arg("--confirm", metavar="APP", help="the app's name again")),
        backups_restore,
    ),
    (
        "backups:schedule",
        "back an add-on up every day at a time (UTC), each verified by a restore; keep the newest N",
        (
            OPTIONAL_ADDON,
            arg("--at", required=True, metavar="'HH:MM UTC'"),
            arg("--keep", type=int, default=7, metavar="N"),
        ),
        backups_schedule,
    ),
    (
        "backups:unschedule",
        "stop an add-on's daily backups (its backups stay)",
        (OPTIONAL_ADDON,),
        backups_unschedule,
    ),
]


def _register_backup_commands() -> None:
    # in a function: loop names at module level would shadow the module's own (`_run` did, breaking pg:psql)
    for prefix in ("pg", "redis"):
        for name, summary, arguments, run in BACKUP_COMMANDS:
            full = f"{prefix}:{name}"
            command(full, summary, *arguments, needs_app=True)(_with_name(run, full))


_register_backup_commands()
