"""Writes for pipelines: create, destroy, put an app in a stage or take it out, promote. Each records an AuditEvent.

A promotion is an image deploy (berth.builds.services.image_deploy) of the upstream app's live release image to each
app of the next stage: the same bytes (no rebuild), the downstream app's own config vars, and the same health-gated
roll-out as every deploy, followed like any build.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from berth.accounts.errors import Conflict
from berth.accounts.models import Team
from berth.accounts.validators import validate_team_name
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.builds.services import BuildConflict, image_deploy
from berth.deploys.errors import NothingLive
from berth.deploys.selectors import live_release
from berth.pipelines.models import STAGE_ORDER, Pipeline, PipelineApp, Stage


def pipeline_create(*, team: Team, name: str, actor, remote_addr: str | None = None) -> Pipeline:
    try:
        validate_team_name(name)  # the same shape as team and app names
    except ValidationError:
        raise ValidationError(
            {"name": "must be 2-30 characters: lowercase letters, digits and hyphens, starting with a letter"}
        ) from None
    try:
        with transaction.atomic():
            pipeline = Pipeline.objects.create(team=team, name=name)
            audit_record(
                action="pipeline.create", actor=actor, team=team, target=name, remote_addr=remote_addr
            )
    except IntegrityError:
        raise Conflict(f"a pipeline named {name!r} already exists") from None
    return pipeline


def pipeline_destroy(*, pipeline: Pipeline, actor, remote_addr: str | None = None) -> None:
    """The pipeline goes; its apps stay as they are."""
    with transaction.atomic():
        pipeline.delete()
        audit_record(
            action="pipeline.destroy",
            actor=actor,
            team=pipeline.team,
            target=pipeline.name,
            remote_addr=remote_addr,
        )


def pipeline_app_set(
    *, pipeline: Pipeline, app: App, stage: str, actor, remote_addr: str | None = None
) -> PipelineApp:
    """Put an app of the pipeline's team in a stage (moving it if it was in another stage or pipeline)."""
    if stage not in Stage.values:
        raise ValidationError({"stage": f"must be one of {', '.join(Stage.values)}"})
    if app.team_id != pipeline.team_id:
        raise ValidationError({"app": f"{app.name} is not an app of team {pipeline.team.name}"})
    with transaction.atomic():
        coupling, _ = PipelineApp.objects.update_or_create(
            app=app, defaults={"pipeline": pipeline, "stage": stage}
        )
        audit_record(
            action="pipeline.app.set",
            actor=actor,
            team=pipeline.team,
            target=f"{pipeline.name} {app.name}",
            remote_addr=remote_addr,
            data={"stage": stage},
        )
    return coupling


def pipeline_app_remove(*, app: App, actor, remote_addr: str | None = None) -> None:
    coupling = PipelineApp.objects.select_related("pipeline").filter(app=app).first()
    if coupling is None:
        raise Http404(f"{app.name} is in no pipeline")
    with transaction.atomic():
        coupling.delete()
        audit_record(
            action="pipeline.app.remove",
            actor=actor,
            team=app.team,
            target=f"{coupling.pipeline.name} {app.name}",
            remote_addr=remote_addr,
        )


@dataclass
class Promotion:
    """One downstream app's outcome: the build following the deploy, or why none was queued."""

    app: str
    build: int | None = None
    error: str = ""


def next_stage_apps(app: App) -> list[App]:
    """The apps of the stage after `app`'s in its pipeline (none for production or an app in no pipeline)."""
    coupling = PipelineApp.objects.select_related("pipeline").filter(app=app).first()
    if coupling is None:
        raise ValidationError({"app": f"{app.name} is in no pipeline: add it with berth pipelines:add"})
    position = STAGE_ORDER.index(coupling.stage)
    if position + 1 >= len(STAGE_ORDER):
        raise ValidationError(
            {"app": f"{app.name} is in the last stage ({coupling.stage}): nothing to promote to"}
        )
    downstream = STAGE_ORDER[position + 1]
    return [
        c.app
        for c in PipelineApp.objects.select_related("app", "app__team").filter(
            pipeline=coupling.pipeline, stage=downstream
        )
    ]


def promote(
    *, app: App, actor, to: list[str] | None = None, remote_addr: str | None = None
) -> list[Promotion]:
    """Deploy `app`'s live image to the apps of the next stage (or those of them named in `to`)."""
    release = live_release(app)
    if release is None or not release.image:
        raise NothingLive(f"{app.name} has no live release to promote")
    targets = next_stage_apps(app)
    if to:
        unknown = sorted(set(to) - {target.name for target in targets})
        if unknown:
            raise ValidationError(
                {"to": f"not in the next stage of {app.name}'s pipeline: {', '.join(unknown)}"}
            )
        targets = [target for target in targets if target.name in to]
    if not targets:
        raise ValidationError({"app": f"the next stage of {app.name}'s pipeline has no app"})
    outcomes = []
    for target in targets:
        try:
            build = image_deploy(app=target, image_ref=release.image, actor=actor, remote_addr=remote_addr)
        except (BuildConflict, ValueError) as exc:
            outcomes.append(Promotion(app=target.name, error=str(exc)))
            continue
        outcomes.append(Promotion(app=target.name, build=build.pk))
    audit_record(
        action="pipeline.promote",
        actor=actor,
        team=app.team,
        target=f"{app.name} v{release.version}",
        remote_addr=remote_addr,
        data={"to": [o.app for o in outcomes if o.build], "refused": [o.app for o in outcomes if o.error]},
    )
    return outcomes
