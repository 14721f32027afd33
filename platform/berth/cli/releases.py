"""`berth releases`, builds, image deploys and rollbacks: following a build's lines as they arrive."""

from __future__ import annotations

import argparse
import time

from berth.cli.client import (
    Client,
    CliError,
    UsageError,
    segment,
)
from berth.cli.commands import (
    Interrupted,
    api,
    app_path,
    arg,
    command,
    version_label,
    when,
)
from berth.cli.output import fields, table

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
    "builds:cache:clear",
    "drop the app's dependency cache: its next build downloads every dependency again",
    needs_app=True,
)
def builds_cache_clear(args):
    result = api().delete(app_path(args, "/build-cache"))
    if result["cleared"]:
        return result, f"Cleared the build cache of {args.app}"
    return result, f"{args.app} has no build cache"


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
