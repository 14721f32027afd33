"""`berth pipelines…`: a team's apps in stages (development → staging → production) and promotion of an app's live
image, unchanged, to the next stage, as Heroku's pipelines."""

from __future__ import annotations

from berth.cli.client import CliError, segment
from berth.cli.commands import TEAM, api, app_path, arg, command
from berth.cli.output import table
from berth.cli.releases import echo, follow_build

STAGES = ("development", "staging", "production")
PIPELINE = arg("pipeline", metavar="PIPELINE")


def _path(name: str, suffix: str = "") -> str:
    return f"/api/v1/pipelines/{segment(name)}{suffix}"


def _stages(pipeline: dict) -> str:
    lines = [f"=== {pipeline['name']} (team {pipeline['team']})"]
    for stage in STAGES:
        apps = [a["app"] for a in pipeline["apps"] if a["stage"] == stage]
        lines.append(f"{stage + ':':<13} {', '.join(apps) or '-'}")
    return "\n".join(lines)


@command("pipelines", "list your teams' pipelines")
def pipelines(args):
    rows = api().get("/api/v1/pipelines")
    return rows, table(
        rows,
        ["NAME", "TEAM", "APPS"],
        lambda p: [p["name"], p["team"], ", ".join(f"{a['app']} ({a['stage']})" for a in p["apps"])],
        empty="You have no pipelines; create one with `berth pipelines:create NAME`.",
    )


@command("pipelines:create", "create a pipeline", PIPELINE, TEAM)
def pipelines_create(args):
    body = {"name": args.pipeline} | ({"team": args.team} if args.team else {})
    pipeline = api().post("/api/v1/pipelines", body)
    return pipeline, f"Created pipeline {pipeline['name']} in team {pipeline['team']}"


@command("pipelines:info", "show a pipeline's apps by stage", PIPELINE)
def pipelines_info(args):
    pipeline = api().get(_path(args.pipeline))
    return pipeline, _stages(pipeline)


@command(
    "pipelines:add",
    "put an app in a stage of a pipeline",
    PIPELINE,
    arg("--stage", required=True, choices=STAGES),
    needs_app=True,
)
def pipelines_add(args):
    pipeline = api().post(_path(args.pipeline, "/apps"), {"app": args.app, "stage": args.stage})
    return pipeline, f"Added {args.app} to {pipeline['name']} as {args.stage}"


@command("pipelines:remove", "take an app out of its pipeline", PIPELINE, needs_app=True)
def pipelines_remove(args):
    api().delete(_path(args.pipeline, f"/apps/{segment(args.app)}"))
    return {"removed": args.app}, f"Removed {args.app} from {args.pipeline}"


@command(
    "pipelines:destroy",
    "delete a pipeline (its apps stay) (admin+)",
    PIPELINE,
    arg("--confirm", metavar="PIPELINE", help="the pipeline's name again"),
)
def pipelines_destroy(args):
    if args.confirm != args.pipeline:
        raise CliError(
            f"this deletes the pipeline {args.pipeline}; to proceed, add --confirm {args.pipeline}"
        )
    api().delete(_path(args.pipeline))
    return {"destroyed": args.pipeline}, f"Destroyed pipeline {args.pipeline}"


@command(
    "pipelines:promote",
    "deploy the app's live image (no rebuild) to the next stage and follow it; exit 1 unless every one succeeds",
    arg("--to", nargs="+", metavar="APP", help="only these apps of the next stage"),
    needs_app=True,
)
def pipelines_promote(args):
    client = api()
    outcomes = client.post(app_path(args, "/promote"), {"to": args.to} if args.to else {})
    failed = []
    for outcome in outcomes:
        if outcome["error"]:
            failed.append(f"{outcome['app']}: {outcome['error']}")
            continue
        if not args.json:
            echo(f"Promoting {args.app} to {outcome['app']} (build {outcome['build']})")
        try:
            build = follow_build(client, _for_app(args, outcome["app"]), outcome["build"])
        except CliError as exc:
            failed.append(f"{outcome['app']}: {exc}")
            continue
        if not args.json:
            echo(f"Promoted to {outcome['app']} v{build['release']}")
    if failed:
        raise CliError("promotion failed for " + "; ".join(failed))
    return outcomes, ""


def _for_app(args, app: str):
    copy = type(args)(**vars(args))
    copy.app = app
    return copy
