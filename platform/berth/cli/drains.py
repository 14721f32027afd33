"""`berth drains…`: an app's log drains (Heroku's names): every line of the app (its output, router access lines,
platform events) sent to syslog (TCP or TLS, RFC 5424) or HTTPS, with what each drain was sent and lost."""

from __future__ import annotations

from berth.cli.client import CliError, segment
from berth.cli.commands import api, app_path, arg, command, when
from berth.cli.output import table


@command("drains", "list an app's log drains: delivered, dropped, last error and success", needs_app=True)
def drains(args):
    rows = api().get(app_path(args, "/drains"))
    return rows, table(
        rows,
        ["ID", "URL", "DELIVERED", "DROPPED", "LAST SUCCESS (UTC)", "LAST ERROR"],
        lambda d: [
            d["id"],
            d["url"],
            d["delivered"],
            d["dropped"],
            when(d["last_success_at"]) if d["last_success_at"] else "never",
            f"{when(d['last_error_at'])}: {d['last_error']}" if d["last_error"] else "",
        ],
        empty=f"{args.app} has no log drains; add one with: berth drains:add syslog+tls://HOST:PORT -a {args.app}",
    )


@command(
    "drains:add",
    "send an app's log lines to a drain",
    arg("url", metavar="URL", help="syslog+tls://host:port, syslog://host:port or https://…"),
    needs_app=True,
)
def drains_add(args):
    drain = api().post(app_path(args, "/drains"), {"url": args.url})
    return drain, f"Added drain {drain['id']} ({drain['token']}) to {args.app}: {drain['url']}"


@command(
    "drains:remove",
    "stop sending an app's log lines to a drain",
    arg("drain", metavar="URL|ID", help="the drain's URL, id or token"),
    needs_app=True,
)
def drains_remove(args):
    client = api()
    wanted = args.drain
    if not wanted.isdigit() and not wanted.startswith("d."):
        # a URL: found among the app's drains (it cannot travel as one path segment)
        match = [d for d in client.get(app_path(args, "/drains")) if d["url"] == wanted]
        if not match:
            raise CliError(f"{args.app} has no drain {args.drain}")
        wanted = str(match[0]["id"])
    client.delete(app_path(args, f"/drains/{segment(wanted)}"))
    return {"drain": args.drain, "removed": True}, f"Removed drain {args.drain} from {args.app}"
