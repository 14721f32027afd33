"""Reads for the workflow cards (issue 18): what the app page's Workflow card and the team page's pipelines and
webhooks show, gathered here so the pages' views stay as they are (the template tags in templatetags/workflow.py
call these)."""

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from berth.accounts.models import Team
from berth.apps.models import App
from berth.hooks.models import EVENTS, Webhook, WebhookDelivery
from berth.hooks.selectors import deliveries_for_webhook, webhooks_for_team
from berth.jobs.models import CronJob, CronRun
from berth.jobs.selectors import cron_jobs_with_last_runs
from berth.pipelines.models import STAGE_ORDER, Pipeline, PipelineApp
from berth.pipelines.services import next_stage_apps

DELIVERIES_SHOWN = 5


@dataclass
class AppPipelinePlace:
    """Where an app stands in its pipeline, and which apps a promotion would deploy to."""

    pipeline: str
    stage: str
    next_stage: str | None
    next_apps: list[App]


def app_previews(app: App) -> list[App]:
    """The app's preview apps (one per pushed branch), by name."""
    return list(App.objects.filter(parent=app).order_by("name"))


def app_pipeline_place(app: App) -> AppPipelinePlace | None:
    coupling = PipelineApp.objects.select_related("pipeline").filter(app=app).first()
    if coupling is None:
        return None
    position = STAGE_ORDER.index(coupling.stage)
    next_stage = STAGE_ORDER[position + 1] if position + 1 < len(STAGE_ORDER) else None
    try:
        next_apps = next_stage_apps(app) if next_stage else []
    except ValidationError:  # moved out of the pipeline meanwhile
        next_apps = []
    return AppPipelinePlace(
        pipeline=coupling.pipeline.name, stage=coupling.stage, next_stage=next_stage, next_apps=next_apps
    )


def app_cron_jobs(app: App) -> list[tuple[CronJob, CronRun | None]]:
    return cron_jobs_with_last_runs(app)


@dataclass
class PipelineRow:
    pipeline: Pipeline
    stages: list[tuple[str, list[App]]] = field(default_factory=list)
    refused: dict | None = None  # the refused "put an app in a stage" of this pipeline, shown in its form


def team_pipelines(team: Team) -> list[PipelineRow]:
    """The team's pipelines, each with its apps by stage (development → staging → production), in two queries."""
    rows = []
    for pipeline in Pipeline.objects.filter(team=team).prefetch_related("couplings__app").order_by("name"):
        couplings = list(pipeline.couplings.all())
        stages = [
            (stage, sorted((c.app for c in couplings if c.stage == stage), key=lambda a: a.name))
            for stage in STAGE_ORDER
        ]
        rows.append(PipelineRow(pipeline=pipeline, stages=stages))
    return rows


def team_app_names(team: Team) -> list[str]:
    """The apps one can put in a pipeline: the team's own apps (not preview apps)."""
    return list(
        App.objects.filter(team=team, parent__isnull=True).order_by("name").values_list("name", flat=True)
    )


@dataclass
class WebhookRow:
    webhook: Webhook
    deliveries: list[WebhookDelivery]


def team_webhooks(team: Team) -> list[WebhookRow]:
    return [
        WebhookRow(webhook=w, deliveries=deliveries_for_webhook(w, limit=DELIVERIES_SHOWN))
        for w in webhooks_for_team(team)
    ]


WEBHOOK_EVENTS = EVENTS
