"""`berth webhooks…`: a team's outbound webhooks (team admins): signed HTTP POSTs, Slack-compatible messages or
e-mails on deploy and alarm events, and each one's delivery log."""

from __future__ import annotations

from berth.cli.client import segment
from berth.cli.commands import TEAM, api, arg, command, resolve_team, when
from berth.cli.output import table

EVENTS = "deploy.started,deploy.live,deploy.failed,deploy.rolled_back,build.failed,app.crashed,cert.alarm,backup.alarm"


def _path(team: str, suffix: str = "") -> str:
    return f"/api/v1/teams/{segment(team)}/webhooks{suffix}"


@command("webhooks", "list a team's webhooks", TEAM)
def webhooks(args):
    client = api()
    team = resolve_team(client, args.team)
    rows = client.get(_path(team))
    return rows, table(
        rows,
        ["ID", "KIND", "URL", "EVENTS"],
        lambda w: [w["id"], w["kind"], w["url"], ",".join(w["events"])],
        empty=f"team {team} has no webhooks; add one with: berth webhooks:add URL -t {team}",
    )


@command(
    "webhooks:add",
    "send a team's app events to a URL (signed POST), a Slack webhook, or mailto:ADDRESSES",
    arg("url", metavar="URL", help="https://…, or mailto:a@example.org,b@example.org for e-mail"),
    arg("--events", metavar="EVENTS", help=f"comma-separated, default all: {EVENTS}"),
    arg("--slack", action="store_true", help='post Slack-compatible {"text": …} (an incoming-webhook URL)'),
    TEAM,
)
def webhooks_add(args):
    client = api()
    team = resolve_team(client, args.team)
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
    webhook = client.post(_path(team), {"url": args.url, "events": events, "slack": args.slack})
    text = f"Added webhook {webhook['id']} ({webhook['kind']}) to team {team}: {', '.join(webhook['events'])}"
    if webhook.get("secret"):
        text += (
            f"\nSigning secret (shown once, keep it): {webhook['secret']}\n"
            'Each POST carries Berth-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body with it>'
        )
    return webhook, text


@command("webhooks:remove", "remove a team's webhook", arg("id", type=int, metavar="ID"), TEAM)
def webhooks_remove(args):
    client = api()
    team = resolve_team(client, args.team)
    client.delete(_path(team, f"/{args.id}"))
    return {"id": args.id, "removed": True}, f"Removed webhook {args.id} from team {team}"


@command(
    "webhooks:deliveries",
    "a webhook's latest deliveries: status, attempts, answer",
    arg("id", type=int, metavar="ID"),
    TEAM,
)
def webhooks_deliveries(args):
    client = api()
    team = resolve_team(client, args.team)
    rows = client.get(_path(team, f"/{args.id}/deliveries"))
    return rows, table(
        rows,
        ["ID", "EVENT", "STATUS", "ATTEMPTS", "RESPONSE", "CREATED (UTC)", "LAST ERROR"],
        lambda d: [
            d["id"],
            d["event"],
            d["status"] + (f" (next try {when(d['next_attempt_at'])})" if d["next_attempt_at"] else ""),
            d["attempts"],
            d["response_code"],
            when(d["created_at"]),
            d["last_error"],
        ],
        empty=f"webhook {args.id} has no deliveries yet",
    )
