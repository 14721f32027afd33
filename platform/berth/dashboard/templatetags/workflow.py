"""`{% workflow_card %}` (app page) and `{% team_workflow %}` (team page): the workflow cards of issue 18, each
loading its own data (berth.dashboard.workflow) from the page's context, so the pages' views stay as they are."""

from django import template
from django.urls import reverse

from berth.accounts.roles import ADMIN, MEMBER, role_at_least
from berth.dashboard import workflow

register = template.Library()


@register.inclusion_tag("dashboard/_workflow.html", takes_context=True)
def workflow_card(context) -> dict:
    app, role = context["app"], context.get("role")
    request = context.get("request")
    shown_once = context.get("shown_once") or {}
    webhook_path = reverse("source-webhook", kwargs={"app": app.name})
    return {
        "app": app,
        "can_edit": role_at_least(role, MEMBER),
        "refused": context.get("refused") or {},
        "previews": workflow.app_previews(app),
        "pipeline": workflow.app_pipeline_place(app),
        "jobs": workflow.app_cron_jobs(app),
        "webhook_url": request.build_absolute_uri(webhook_path) if request else webhook_path,
        # the source's webhook secret, shown here once after it was set (the session held it until this page)
        "source_secret": shown_once.get("secret")
        if shown_once.get("place") == "workflow-source" and shown_once.get("app") == app.name
        else None,
    }


@register.inclusion_tag("dashboard/_team_workflow.html", takes_context=True)
def team_workflow(context) -> dict:
    team, role = context["team"], context.get("role")
    can_admin = role_at_least(role, ADMIN)
    shown_once = context.get("shown_once") or {}
    refused = context.get("refused") or {}
    pipelines = workflow.team_pipelines(team)
    for row in pipelines:
        if refused.get("pipeline_app", {}).get("pipeline") == row.pipeline.name:
            row.refused = refused["pipeline_app"]
    return {
        "team": team,
        "can_edit": role_at_least(role, MEMBER),
        "can_admin": can_admin,
        "refused": refused,
        "pipelines": pipelines,
        "stages": workflow.STAGE_ORDER,
        "app_names": workflow.team_app_names(team),
        # a webhook's target can hold a secret (Slack's URL), so only admins see them, as in the API
        "webhooks": workflow.team_webhooks(team) if can_admin else [],
        "events": workflow.WEBHOOK_EVENTS,
        "webhook_secret": shown_once if shown_once.get("place") == "webhooks" else None,
    }
