"""`berth users…`: accounts, for platform administrators (the API answers 403 to anyone else): list them, create
one (the person sets a password through the link printed), disable or enable one, make a password reset link."""

from __future__ import annotations

from urllib.parse import urlencode

from berth.cli.client import segment
from berth.cli.commands import api, arg, command, when
from berth.cli.output import table

USERNAME = arg("username", metavar="USERNAME")


def _user_path(username: str, suffix: str = "") -> str:
    return f"/api/v1/users/{segment(username)}{suffix}"


@command("users", "list every account (platform administrators)", arg("--search", metavar="TEXT"))
def users(args):
    query = f"?{urlencode({'search': args.search})}" if args.search else ""
    rows = api().get(f"/api/v1/users{query}")
    return rows, table(
        rows,
        ["USERNAME", "EMAIL", "STATE", "ADMIN", "TEAMS", "LAST LOGIN"],
        lambda u: [
            u["username"],
            u["email"],
            "active" if u["is_active"] else "disabled",
            "yes" if u["platform_admin"] else "",
            ", ".join(u["teams"]),
            when(u["last_login"]),
        ],
        empty="no users match" if args.search else "no users",
    )


@command(
    "users:create",
    "create an account; prints the link the person sets a password with",
    USERNAME,
    arg("--email", required=True, metavar="ADDRESS"),
    arg("--platform-admin", action="store_true", help="a platform administrator (superuser)"),
)
def users_create(args):
    body = {"username": args.username, "email": args.email, "platform_admin": args.platform_admin}
    user = api().post("/api/v1/users", body)
    return user, (
        f"Created {user['username']} <{user['email']}>. Send them this link to set a password "
        f"(it works once):\n{user['password_reset_url']}"
    )


@command("users:disable", "disable an account: no sign-in, its tokens stop working", USERNAME)
def users_disable(args):
    user = api().patch(_user_path(args.username), {"is_active": False})
    return user, f"Disabled {user['username']}: they cannot sign in, and their API tokens stop working"


@command("users:enable", "enable a disabled account again", USERNAME)
def users_enable(args):
    user = api().patch(_user_path(args.username), {"is_active": True})
    return user, f"Enabled {user['username']}"


@command("users:password-reset", "print a password reset link to hand to the person", USERNAME)
def users_password_reset(args):
    link = api().post(_user_path(args.username, "/password-reset-link"), {})
    return link, f"Send {link['username']} this link to set a new password (it works once):\n{link['url']}"
