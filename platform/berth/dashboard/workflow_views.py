"""Dashboard actions of issue 18's workflow cards, each a thin call of the service the API calls, with the API's
role rules (berth.api.permissions): on an app, maintenance mode, preview apps, the repository it follows, scheduled
jobs and promotion (members); on a team, pipelines (members; destroyed by admins) and webhooks (admins). A refused
form re-renders the page with each error beside its field and what was typed kept (berth.dashboard.forms)."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from berth.accounts.roles import ADMIN, MEMBER
from berth.apps import services as apps_services
from berth.apps.models import App
from berth.builds import sources as sources_services
from berth.dashboard.common import SESSION_SHOWN_ONCE, client_ip, team_with_role
from berth.dashboard.forms import FORM, service_refusal
from berth.dashboard.team_views import _team_back, _team_page
from berth.dashboard.views import _app, _back, app_page
from berth.deploys.errors import DeployError
from berth.hooks import services as hooks_services
from berth.hooks.models import Webhook
from berth.jobs import services as jobs_services
from berth.jobs.models import CronJob
from berth.pipelines import services as pipelines_services
from berth.pipelines.models import Pipeline
from berth.routing.router import RouterError

CARD = "workflow"  # the app page's section these forms come back to
TEAM_SECTION = "team-workflow"


def _keys(raw: str) -> list[str]:
    """Config keys typed one per line or separated by commas or spaces."""
    return [key for key in re.split(r"[\s,]+", raw) if key]


# --- app: maintenance, previews, source, scheduled jobs, promotion ----------------------------------------------


@login_required
@require_POST
def maintenance_set(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    enabled = request.POST.get("maintenance") == "on"
    page = request.POST.get("maintenance_page", "")
    _, errors = service_refusal(
        apps_services.app_maintenance_set,
        fields=("maintenance", "maintenance_page"),
        errors=(RouterError,),
        app=app,
        enabled=enabled,
        page=page,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        values = {"maintenance": enabled, "maintenance_page": page}
        return app_page(request, app, role, refused={"maintenance": {"errors": errors, "values": values}})
    messages.success(request, f"Maintenance mode {'on' if enabled else 'off'}.")
    return _back(app, CARD)


@login_required
@require_POST
def previews_set(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    enabled = request.POST.get("previews") == "on"
    raw = request.POST.get("preview_exclude", "")
    _, errors = service_refusal(
        apps_services.app_update,
        fields=("previews", "preview_exclude"),
        app=app,
        changes={"previews": enabled, "preview_exclude": _keys(raw)},
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        values = {"previews": enabled, "preview_exclude": raw}
        return app_page(request, app, role, refused={"previews": {"errors": errors, "values": values}})
    messages.success(request, f"Preview apps {'on' if enabled else 'off'}.")
    return _back(app, CARD)


@login_required
@require_POST
def source_set(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    url = request.POST.get("url", "").strip()
    secret, errors = service_refusal(
        sources_services.source_set,
        fields=("url",),
        app=app,
        url=url,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        return app_page(request, app, role, refused={"source": {"errors": errors, "values": {"url": url}}})
    # kept in the session only until the app page shows it, beside the webhook URL to paste with it
    request.session[SESSION_SHOWN_ONCE] = {
        "label": f"{app.name} follows {url}: its webhook secret",
        "secret": secret,
        "place": "workflow-source",
        "app": app.name,
    }
    return _back(app, CARD)


@login_required
@require_POST
def source_remove(request: HttpRequest, app: str) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    sources_services.source_remove(app=app, actor=request.user, remote_addr=client_ip(request))
    messages.success(request, f"{app.name} follows no repository now; its webhook answers 404.")
    return _back(app, CARD)


@login_required
@require_POST
def cron_add(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    values = {
        "schedule": request.POST.get("schedule", "").strip(),
        "command": request.POST.get("command", ""),
        "allow_overlap": request.POST.get("allow_overlap") == "on",
    }
    job, errors = service_refusal(
        jobs_services.cron_job_add,
        fields=("schedule", "command"),
        app=app,
        actor=request.user,
        remote_addr=client_ip(request),
        **values,
    )
    if errors:
        return app_page(request, app, role, refused={"cron_add": {"errors": errors, "values": values}})
    messages.success(
        request, f"Scheduled job {job.pk}: {job.schedule} (UTC), next run {job.next_run_at:%H:%M} UTC."
    )
    return _back(app, CARD)


@login_required
@require_POST
def cron_remove(request: HttpRequest, app: str, job_id: int) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    try:
        jobs_services.cron_job_remove(
            app=app, job_id=job_id, actor=request.user, remote_addr=client_ip(request)
        )
    except CronJob.DoesNotExist:
        messages.error(request, f"{app.name} has no scheduled job {job_id}.")
    else:
        messages.success(request, f"Removed scheduled job {job_id}.")
    return _back(app, CARD)


@login_required
@require_POST
def promote(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    try:
        outcomes = pipelines_services.promote(app=app, actor=request.user, remote_addr=client_ip(request))
    except (ValidationError, DeployError) as exc:
        # said as the service says it: it starts with the app's name, which is lowercase
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return app_page(request, app, role, refused={"promote": {"errors": {FORM: text}, "values": {}}})
    for outcome in outcomes:
        if outcome.error:
            messages.error(request, f"{outcome.app}: not promoted ({outcome.error}).")
        else:
            messages.success(request, f"Promoting to {outcome.app}: build {outcome.build}.")
    return _back(app, CARD)


# --- team: pipelines, webhooks -----------------------------------------------------------------------------------


def _pipeline(team, name: str) -> Pipeline:
    pipeline = Pipeline.objects.filter(team=team, name=name).first()
    if pipeline is None:
        raise Http404(f"team {team.name} has no pipeline {name!r}")
    return pipeline


@login_required
@require_POST
def pipeline_create(request: HttpRequest, team: str) -> HttpResponse:
    team, role = team_with_role(request, team, MEMBER)
    name = request.POST.get("name", "").strip()
    _, errors = service_refusal(
        pipelines_services.pipeline_create,
        fields=("name",),
        conflict_field="name",
        team=team,
        name=name,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        return _team_page(
            request, team, role, refused={"pipeline_create": {"errors": errors, "values": {"name": name}}}
        )
    messages.success(request, f"Created pipeline {name}; put apps in its stages below.")
    return _team_back(team, TEAM_SECTION)


@login_required
@require_POST
def pipeline_destroy(request: HttpRequest, team: str, pipeline: str) -> HttpResponse:
    team, _ = team_with_role(request, team, ADMIN)
    pipeline = _pipeline(team, pipeline)
    pipelines_services.pipeline_destroy(pipeline=pipeline, actor=request.user, remote_addr=client_ip(request))
    messages.success(request, f"Destroyed pipeline {pipeline.name}; its apps stay as they are.")
    return _team_back(team, TEAM_SECTION)


@login_required
@require_POST
def pipeline_app_set(request: HttpRequest, team: str, pipeline: str) -> HttpResponse:
    team, role = team_with_role(request, team, MEMBER)
    pipeline = _pipeline(team, pipeline)
    name, stage = request.POST.get("app", "").strip(), request.POST.get("stage", "")
    app = App.objects.filter(team=team, name=name).first()
    if app is None:
        errors = {"app": f"team {team.name} has no app {name!r}"}
    else:
        _, errors = service_refusal(
            pipelines_services.pipeline_app_set,
            fields=("app", "stage"),
            pipeline=pipeline,
            app=app,
            stage=stage,
            actor=request.user,
            remote_addr=client_ip(request),
        )
    if errors:
        refused = {
            "pipeline_app": {
                "pipeline": pipeline.name,
                "errors": errors,
                "values": {"app": name, "stage": stage},
            }
        }
        return _team_page(request, team, role, refused=refused)
    messages.success(request, f"{name} is in {pipeline.name}'s {stage} stage.")
    return _team_back(team, TEAM_SECTION)


@login_required
@require_POST
def pipeline_app_remove(request: HttpRequest, team: str, pipeline: str, app: str) -> HttpResponse:
    team, _ = team_with_role(request, team, MEMBER)
    pipeline = _pipeline(team, pipeline)
    coupled = App.objects.filter(team=team, name=app, pipeline_coupling__pipeline=pipeline).first()
    if coupled is None:
        raise Http404(f"{app} is not in pipeline {pipeline.name}")
    pipelines_services.pipeline_app_remove(app=coupled, actor=request.user, remote_addr=client_ip(request))
    messages.success(request, f"Took {app} out of {pipeline.name}.")
    return _team_back(team, TEAM_SECTION)


@login_required
@require_POST
def webhook_add(request: HttpRequest, team: str) -> HttpResponse:
    team, role = team_with_role(request, team, ADMIN)
    values = {
        "url": request.POST.get("url", "").strip(),
        "events": request.POST.getlist("events"),
        "slack": request.POST.get("slack") == "on",
    }
    result, errors = service_refusal(
        hooks_services.webhook_add,
        fields=("url", "events"),
        team=team,
        actor=request.user,
        remote_addr=client_ip(request),
        **values,
    )
    if errors:
        return _team_page(request, team, role, refused={"webhook_add": {"errors": errors, "values": values}})
    webhook, secret = result
    if secret:
        request.session[SESSION_SHOWN_ONCE] = {
            "label": f"Webhook {webhook.pk}'s signing secret (Berth-Signature): copy it now, it is shown only once",
            "secret": secret,
            "place": "webhooks",
        }
    else:
        messages.success(request, f"Added webhook {webhook.pk} ({webhook.kind}).")
    return _team_back(team, TEAM_SECTION)


@login_required
@require_POST
def webhook_remove(request: HttpRequest, team: str, webhook_id: int) -> HttpResponse:
    team, _ = team_with_role(request, team, ADMIN)
    try:
        hooks_services.webhook_remove(
            team=team, webhook_id=webhook_id, actor=request.user, remote_addr=client_ip(request)
        )
    except Webhook.DoesNotExist:
        messages.error(request, f"Team {team.name} has no webhook {webhook_id}.")
    else:
        messages.success(request, f"Removed webhook {webhook_id} and its delivery log.")
    return _team_back(team, TEAM_SECTION)
