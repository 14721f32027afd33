"""`berth addons…`, `pg:…`, `redis:cli`: a team's PostgreSQL and Redis servers, attached to apps as config vars
(DATABASE_URL, REDIS_URL or <AS>_URL). Attaching, detaching and rotating change config vars: each is a release
that rolls the app, as `config:set` does."""

from __future__ import annotations

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
    needs_app=True,
)
def addons_create(args):
    body = {"kind": args.kind, "plan": args.plan}
    body |= {"as": args.as_name} if args.as_name else {}
    body |= {"name": args.name} if args.name else {}
    addon = _slow_api().post(app_path(args, "/addons"), body)
    return addon, f"Created {addon['name']} ({addon['kind']}), attached to {_attached(addon)}"


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
    "detach an add-on from every app and delete its server and its data (admin+)",
    ADDON,
    arg("--confirm", metavar="ADDON", help="the add-on's name again"),
    needs_app=True,
)
def addons_destroy(args):
    if args.confirm != args.addon:
        raise CliError(
            f"this deletes {args.addon} and its data for good; to proceed, add --confirm {args.addon}"
        )
    _slow_api().delete(_addon_path(args))
    return {"destroyed": args.addon}, f"Destroyed {args.addon} and its data"


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
