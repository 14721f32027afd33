"""`berth apps`, the app's git remote, scaling and restarts, config vars and custom domains."""

from __future__ import annotations

import os
import shlex
import sys

from berth.cli.client import (
    CliError,
    UsageError,
    current_credentials,
    git,
    segment,
)
from berth.cli.commands import (
    TEAM,
    api,
    app_path,
    arg,
    assignments,
    command,
    version_label,
    when,
)
from berth.cli.output import fields, table

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
            # absent from an older server's answer: shown as `-`
            "HTTPS redirect": _on_off(app.get("https_redirect")),
            "HSTS": _on_off(app.get("hsts")),
            "Created": when(app["created_at"]),
        },
    )


def _on_off(value: bool | None) -> str | None:
    return None if value is None else ("on" if value else "off")


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
    credentials = current_credentials()
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
    # git checks the server's certificate against the same CA bundle as the CLI, for this server's URLs only
    ca_setting = f"http.{client.url}/.sslCAInfo"
    if credentials.ca_bundle:
        trust = git("config", ca_setting, os.path.abspath(credentials.ca_bundle))
        failed = trust.returncode != 0
    else:
        # a bundle left by an earlier login to a private CA goes; exit code 5 is git's "nothing to unset"
        trust = git("config", "--unset-all", ca_setting)
        failed = trust.returncode not in (0, 5)
    if failed:
        raise CliError(f"git config failed: {trust.stderr.strip()}")
    data = {"remote": "berth", "url": url, "ca_bundle": credentials.ca_bundle}
    return data, f"Set git remote berth to {url}"


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
    scheme, _, rest = credentials.url.partition("://")
    server = rest.split("/", 1)[0]
    if asked.get("host") and asked["host"] != server:
        return {}, ""  # not our server: let git ask someone else
    if asked.get("protocol") and asked["protocol"] != scheme:
        return {}, ""  # the token of an https server never goes out over plain http, even to the same host
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


# --- maintenance mode ---------------------------------------------------------------------------------------------

MAINTENANCE_PAGE_MAX = 8 * 1024  # the server's limit (berth.routing.router.MAINTENANCE_PAGE_MAX)


@command("maintenance", "say whether an app is in maintenance mode", needs_app=True)
def maintenance(args):
    app = api().get(app_path(args))
    return {"maintenance": app["maintenance"]}, "on" if app["maintenance"] else "off"


@command(
    "maintenance:on",
    "answer every request with a maintenance page (503 + Retry-After); processes keep running",
    arg(
        "--page",
        metavar="FILE",
        help="your own HTML page (up to 8 KB); default: Berth's, or the last one given",
    ),
    needs_app=True,
)
def maintenance_on(args):
    body: dict = {"maintenance": True}
    if args.page:
        try:
            with open(args.page, "rb") as handle:
                data = handle.read(MAINTENANCE_PAGE_MAX + 1)
        except OSError as exc:
            raise CliError(f"cannot read {args.page}: {exc.strerror or exc}") from None
        if len(data) > MAINTENANCE_PAGE_MAX:
            raise CliError(
                f"{args.page} is larger than {MAINTENANCE_PAGE_MAX // 1024} KB; link to larger assets"
            )
        try:
            body["maintenance_page"] = data.decode()
        except UnicodeDecodeError:
            raise CliError(f"{args.page} is not UTF-8 text") from None
    app = api().patch(app_path(args), body)
    return app, f"Maintenance mode is on for {args.app}: every request answers 503 with the maintenance page"


@command("maintenance:off", "serve the app again", needs_app=True)
def maintenance_off(args):
    app = api().patch(app_path(args), {"maintenance": False})
    return app, f"Maintenance mode is off for {args.app}"


# --- preview apps -------------------------------------------------------------------------------------------------


@command("previews", "list an app's preview apps (one per pushed branch)", needs_app=True)
def previews(args):
    client = api()
    app = client.get(app_path(args))
    rows = [row for row in client.get("/api/v1/apps") if row.get("parent") == args.app]
    state = "on" if app["previews"] else "off"
    excluded = ", ".join(app["preview_exclude"]) or "none"
    header = f"Previews are {state} for {args.app} (config keys not copied: {excluded})"
    return rows, header + "\n" + table(
        rows,
        ["APP", "RELEASE", "URL"],
        lambda r: [r["name"], version_label(r["current_release"]), r["url"]],
        empty="no preview apps yet: push a branch other than the deploy branch",
    )


@command(
    "previews:on",
    "make a preview app for each other branch pushed (git push berth feature); git push berth :feature removes it",
    arg("--exclude", nargs="+", metavar="KEY", help="config keys not copied to previews (e.g. STRIPE_KEY)"),
    needs_app=True,
)
def previews_on(args):
    body: dict = {"previews": True} | ({"preview_exclude": args.exclude} if args.exclude else {})
    app = api().patch(app_path(args), body)
    return app, f"Previews are on for {args.app}: push a branch to get {args.app}--<branch>"


@command(
    "previews:off",
    "stop making preview apps (existing ones stay until their branch is deleted)",
    needs_app=True,
)
def previews_off(args):
    app = api().patch(app_path(args), {"previews": False})
    return app, f"Previews are off for {args.app}"


# --- deploys from elsewhere ---------------------------------------------------------------------------------------


@command("sources", "show the git repository an app follows and its push webhook", needs_app=True)
def sources(args):
    source = api().get(app_path(args, "/source"))
    if not source["url"]:
        return source, f"{args.app} follows no repository (berth sources:set URL -a {args.app})"
    return source, fields(
        f"{args.app} source", {"Repository": source["url"], "Webhook": source["webhook_url"]}
    )


@command(
    "sources:set",
    "deploy pushes of a git repository hosted elsewhere (GitHub, GitLab, Gitea…) through its push webhook",
    arg("url", metavar="URL", help="https://… of the repository"),
    needs_app=True,
)
def sources_set(args):
    source = api().put(app_path(args, "/source"), {"url": args.url})
    return source, (
        f"{args.app} follows {source['url']}. On its host, add a push webhook (content type application/json):\n"
        f"  URL:    {source['webhook_url']}\n"
        f"  Secret: {source['secret']}\n"
        "The secret is shown this once. A push of the deploy branch is then fetched, built and deployed."
    )


@command(
    "sources:remove", "stop following the repository (its webhook is refused from now on)", needs_app=True
)
def sources_remove(args):
    api().delete(app_path(args, "/source"))
    return {"removed": True}, f"{args.app} follows no repository now"
