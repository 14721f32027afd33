"""`berth certs…` and `berth https:…`: an app's certificates (issued by the ACME CA or uploaded) and its HTTPS
policy (HTTP → HTTPS redirect, HSTS)."""

from __future__ import annotations

import argparse
from pathlib import Path

from berth.cli.client import CliError, segment
from berth.cli.commands import api, app_path, arg, command, when
from berth.cli.output import table

MAX_PEM_BYTES = (
    64 * 1024
)  # the server's cap per PEM (berth.certs); a bigger file is refused before sending it


def certificate_state(certificate: dict) -> str:
    """What `berth certs` and the dashboard say: pending / issued until <date> / failing: <reason>."""
    if certificate["state"] == "issued":
        return f"issued until {when(certificate['not_after'])}"
    if certificate["state"] == "failing":
        return f"failing: {certificate['reason'] or 'no reason given'}"
    return "pending" + (f" ({certificate['reason']})" if certificate.get("reason") else "")


def read_pem(path: str, what: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_PEM_BYTES:
            raise CliError(f"{path} is larger than {MAX_PEM_BYTES // 1024} KB; is it the {what}?")
        return file.read_text()
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a PEM text file (the {what})") from None
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r} is not on or off")
    return text == "on"


@command("certs", "list an app's certificates and their state", needs_app=True)
def certs(args):
    rows = api().get(app_path(args, "/certs"))
    text = table(
        rows,
        ["ID", "HOSTNAMES", "SOURCE", "STATE"],
        lambda r: [r["id"], ",".join(r["hostnames"]), r["source"], certificate_state(r)],
        empty=f"{args.app} has no certificates yet.",
    )
    alarms = [r for r in rows if r.get("expiring") and r["state"] != "pending"]
    for row in alarms:
        text += f"\nWarning: certificate {row['id']} expires {when(row['not_after'])}"
        text += f" and renewal is failing: {row['reason']}" if row["state"] == "failing" else ""
    return rows, text


@command(
    "certs:add",
    "serve your own certificate (e.g. a wildcard) for the app's hostnames it names",
    arg("certificate", metavar="CERT_FILE", help="PEM: the certificate, then its chain"),
    arg("key", metavar="KEY_FILE", help="PEM: its private key"),
    needs_app=True,
)
def certs_add(args):
    body = {
        "certificate": read_pem(args.certificate, "certificate"),
        "private_key": read_pem(args.key, "private key"),
    }
    certificate = api().post(app_path(args, "/certs"), body)
    return certificate, (
        f"Added certificate {certificate['id']} for {', '.join(certificate['hostnames'])} to {args.app}: "
        f"{certificate_state(certificate)}"
    )


@command(
    "certs:remove",
    "stop serving one of an app's certificates",
    arg("id", metavar="ID", type=int),
    needs_app=True,
)
def certs_remove(args):
    api().delete(app_path(args, f"/certs/{segment(args.id)}"))
    return {"removed": args.id}, f"Removed certificate {args.id} from {args.app}"


@command(
    "certs:renew", "renew one of an app's certificates now", arg("id", metavar="ID", type=int), needs_app=True
)
def certs_renew(args):
    certificate = api().post(app_path(args, f"/certs/{segment(args.id)}/renew"), {})
    return certificate, f"Renewing certificate {args.id} of {args.app}; `berth certs` shows how it went"


def _https_setting(args, field: str, label: str):
    app = api().patch(app_path(args), {field: args.state})
    return app, f"{label} {'on' if app[field] else 'off'} for {args.app}"


@command(
    "https:redirect",
    "answer plain HTTP with a redirect to HTTPS (on by default once a certificate is served)",
    arg("state", metavar="on|off", type=on_off),
    needs_app=True,
)
def https_redirect(args):
    return _https_setting(args, "https_redirect", "HTTP → HTTPS redirect")


@command(
    "https:hsts",
    "tell browsers to use only HTTPS for the app's hostnames (Strict-Transport-Security)",
    arg("state", metavar="on|off", type=on_off),
    needs_app=True,
)
def https_hsts(args):
    return _https_setting(args, "hsts", "HSTS")
