"""Dashboard pages for apps and builds. Thin: find the app with the role the action needs, call a service or a
selector, render or redirect. Every POST re-checks the role (a forged form from a viewer gets 403)."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from berth.accounts.roles import ADMIN, MEMBER, VIEWER, role_at_least
from berth.accounts.selectors import user_role
from berth.apps import selectors as apps_selectors
from berth.apps import services as apps_services
from berth.apps.models import app_url
from berth.builds import services as builds_services
from berth.builds.procfile import RELEASE_PROCESS
from berth.certs.acme_client import acme_enabled
from berth.certs.selectors import apps_serving_https
from berth.dashboard.addon_views import addon_panel
from berth.dashboard.certificates import certificate_alarms, certificate_rows
from berth.dashboard.common import attempt, client_ip, current_team, page, team_with_role
from berth.dashboard.forms import (
    APP_NAME_MAX,
    FORMATION_FIELDS,
    app_name_error,
    config_form_errors,
    formation_input_errors,
    service_refusal,
)
from berth.dashboard.selectors import AppStatusRows, app_state, build_for_app, builds_for_app
from berth.deploys.errors import DeployError
from berth.deploys.formation import formation_update
from berth.deploys.rollout import release_rollback
from berth.deploys.selectors import app_processes
from berth.nodes.selectors import process_rows_visible_to
from berth.releases import selectors as releases_selectors
from berth.releases import services as releases_services
from berth.releases.selectors import releases_for_app

logger = logging.getLogger(__name__)

RELEASES_SHOWN = 30
APPS_PAGE = 100


def _app(request: HttpRequest, name: str, min_role: str):
    """The app and the user's role in its team: 404 outside the team, 403 below `min_role`."""
    app = apps_selectors.app_for_user(user=request.user, name=name, min_role=min_role)
    return app, user_role(user=request.user, team=app.team)


def _back(app, section: str) -> HttpResponse:
    return redirect(reverse("dashboard:app", kwargs={"app": app.name}) + f"#{section}")


# --- apps list ------------------------------------------------------------------------------------------------


# a stand-in app name and build id: a row's links are reversed once per page, then the row's own put in (an app
# name needs no quoting: [a-z0-9-]); a {% url %} per link was a third of rendering a page of 100 apps
ROW_APP, ROW_BUILD = "row-app", 987654321


def _row_links() -> tuple[str, str]:
    app = reverse("dashboard:app", kwargs={"app": ROW_APP})
    build = reverse("dashboard:build", kwargs={"app": ROW_APP, "build_id": ROW_BUILD})
    return app.replace(ROW_APP, "{app}"), build.replace(ROW_APP, "{app}").replace(str(ROW_BUILD), "{build}")


def _status_rows(request: HttpRequest, team=None) -> tuple[object, list[dict], Page | None, bool]:
    """The current team's apps whose name contains ?q=, one page (?page=) of APPS_PAGE, and whether a certificate
    of the team is in alarm: a constant number of queries whatever the number of apps (the page with its
    statuses, the count and the alarm; its certificates, when one serves HTTPS)."""
    if team is None:
        team, _ = current_team(request)
    if team is None:
        return None, [], None, False
    query = request.GET.get("q", "").strip()[:APP_NAME_MAX]
    asked = request.GET.get("page", "")
    # plain rows, not App instances: a page of 100 as models with their certificates was most of the page's time.
    # The page read with the count is the one asked for, if a number of up to 4 digits (else the first); when the
    # Paginator chooses another (none such, past the last), it is read after the count: a statement more
    guess = int(asked) if asked.isascii() and asked.isdigit() and len(asked) <= 4 else 1
    statuses = AppStatusRows(team_id=team.pk, page_size=APPS_PAGE, search=query, page=guess)
    page_obj = Paginator(statuses, APPS_PAGE).get_page(asked or None)
    https = apps_serving_https(page_obj.object_list)
    app_link, build_link = _row_links()
    rows = [
        {
            "name": row["name"],
            "link": app_link.format(app=row["name"]),
            "build_link": build_link.format(app=row["name"], build=row["build_id"]),
            "url": app_url(row["name"], serves_https=row["id"] in https),
            "current_release": row["current_version"],
            "state": app_state(row),
            "build_id": row["build_id"],
            "build_status": row["build_status"],
        }
        for row in page_obj.object_list
    ]
    return team, rows, page_obj, statuses.alarm is not False


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard:apps")


@login_required
@require_GET
def apps_list(request: HttpRequest) -> HttpResponse:
    team, teams = current_team(request)
    team, rows, page_obj, alarm = _status_rows(request, team)
    role = team.role if team else None  # teams_for_user's annotation: user_role's answer, without its query
    query = request.GET.get("q", "").strip()[:APP_NAME_MAX]
    return page(
        request,
        "dashboard/apps.html",
        {
            "apps": rows,
            "page_obj": page_obj,
            "query": query,
            "filters_qs": urlencode({"q": query} if query else {}),
            "role": role,
            "can_create": role_at_least(role, MEMBER),
            "cert_alarms": certificate_alarms(team=team) if alarm else [],
        },
        teams=(team, teams),
    )


@login_required
@require_GET
@never_cache
def apps_status(request: HttpRequest) -> JsonResponse:
    """What the apps list polls to stay live (current release and state of each app of the current team)."""
    _, rows, _, _ = _status_rows(request)
    return JsonResponse({"apps": rows})


@login_required
def app_new(request: HttpRequest) -> HttpResponse:
    team, teams = current_team(request)
    choices = [t for t in teams if role_at_least(user_role(user=request.user, team=t), MEMBER)]
    form = {"name": "", "team": team.name if team else "", "deploy_branch": "main", "health_check_path": "/"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = {key: request.POST.get(key, "").strip() for key in form}
        chosen, _ = team_with_role(request, form["team"], MEMBER)
        settings_ = {k: form[k] for k in ("deploy_branch", "health_check_path") if form[k]}
        too_long = app_name_error(form["name"])
        if too_long:
            errors = {"name": too_long}
        else:
            app, errors = service_refusal(
                apps_services.app_create,
                fields=form.keys(),
                conflict_field="name",
                team=chosen,
                name=form["name"],
                actor=request.user,
                remote_addr=client_ip(request),
                **settings_,
            )
        if not errors:
            messages.success(request, f"Created {app.name}. Deploy an image or push with git to run it.")
            return redirect("dashboard:app", app=app.name)
    elif request.method != "GET":
        return HttpResponse(status=405)
    context = {"form": form, "team_choices": choices, "errors": errors, "name_max": APP_NAME_MAX}
    return page(request, "dashboard/app_new.html", context, status=400 if errors else 200)


# --- one app -----------------------------------------------------------------------------------------------------


@login_required
@require_GET
def app_detail(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, VIEWER)
    return app_page(request, app, role, reveal=request.GET.get("reveal"), edit=request.GET.get("edit"))


def app_page(
    request: HttpRequest,
    app,
    role: str | None,
    *,
    reveal: str | None = None,
    edit: str | None = None,
    refused: dict | None = None,
) -> HttpResponse:
    """The app page; `refused` ({form: {"errors": {field: message}, "values": {field: typed}}}) re-renders it after
    a refused POST (HTTP 400) with that form as it was sent and each error beside its field (berth.dashboard.forms)."""
    app = releases_selectors.app_detail(app=app)
    can_edit = role_at_least(role, MEMBER)
    config_rows = None
    if can_edit:
        # Values stay on the server until someone asks: ?reveal=KEY (or the JS fetch) shows one at a time.
        config = apps_selectors.config_for_app(app=app)
        edited = (refused or {}).get("config_edit")
        config_rows = [
            {"key": key, "value": value if key in (reveal, edit) else None, "editing": key == edit}
            for key, value in config.items()
        ]
        if edited is not None:
            # a refused edit of a value shows again in its row, as typed, the error beside it
            for row in config_rows:
                if row["key"] == edited["values"]["key"]:
                    error = " ".join(edited["errors"].values())
                    row.update(value=edited["values"]["value"], editing=True, error=error)
    processes, processes_error = [], None
    try:
        processes = process_rows_visible_to(user=request.user, rows=app_processes(app=app))
    except Exception as exc:  # the page must render when Docker is down; say so in the section instead
        logger.warning("processes of %s unavailable: %s", app.name, exc)
        processes_error = f"cannot list processes right now ({type(exc).__name__})"
    # the Procfile's release phase runs once per deploy: not a process type to scale
    formation = [f for f in apps_selectors.formation_for_app(app=app) if f.process != RELEASE_PROCESS]
    if "formation" in (refused or {}):
        # the rows as typed, each error beside its input (the rows are not saved: they only render)
        typed, errors = refused["formation"]["values"], refused["formation"]["errors"]
        for row in formation:
            row.errors = {field: errors.get(f"{field}-{row.process}") for field in FORMATION_FIELDS}
            for field in FORMATION_FIELDS:
                setattr(row, field, typed.get(f"{field}-{row.process}", getattr(row, field)))
    process_types = sorted({f.process for f in formation} | {p["process"] for p in processes})
    releases = list(releases_for_app(app=app)[:RELEASES_SHOWN])
    return page(
        request,
        "dashboard/app.html",
        {
            "refused": refused or {},
            # until a release with an image exists (config changes alone make releases without one)
            "first_deploy": can_edit and not any(r.image for r in releases),
            "app": app,
            "role": role,
            "can_edit": can_edit,
            "can_admin": role_at_least(role, ADMIN),
            "releases": releases,
            "formation": formation,
            "processes": processes,
            "processes_error": processes_error,
            "process_types": process_types,
            "domains": list(apps_selectors.domains_for_app(app=app)),
            "certificates": certificate_rows(app),
            "cert_alarms": certificate_alarms(app=app),
            "addons": addon_panel(app=app, role=role),
            "acme_enabled": acme_enabled(),
            "config_rows": config_rows,
            "builds": list(builds_for_app(app=app)),
        },
        status=400 if refused else 200,
    )


@login_required
@require_GET
@never_cache
def config_value(request: HttpRequest, app: str) -> JsonResponse:
    """One config value, for the reveal and edit buttons (members and above, like the API's config GET)."""
    app, _ = _app(request, app, MEMBER)
    key = request.GET.get("key", "")
    config = apps_selectors.config_for_app(app=app)
    if key not in config:
        raise Http404(f"{app.name} has no config var {key!r}")
    return JsonResponse({"key": key, "value": config[key]})


@login_required
@require_POST
def config_set(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    key = request.POST.get("key", "").strip()
    # browsers send textarea newlines as CRLF; config values are Unix text
    value = request.POST.get("value", "").replace("\r\n", "\n")
    # the add form says so; an edit of one row (the page's, or the one app.js builds) does not
    form = "config_add" if request.POST.get("form") == "config_add" else "config_edit"
    errors = config_form_errors(key, value)
    release = None
    if not errors:
        release, errors = service_refusal(
            releases_services.config_update,
            fields=("key", "value"),
            aliases={"config": "key"},
            app=app,
            changes={key: value},
            actor=request.user,
            remote_addr=client_ip(request),
        )
    if errors:
        refused = {form: {"errors": errors, "values": {"key": key, "value": value}}}
        return app_page(request, app, role, refused=refused)
    if release is None:
        messages.info(request, "Nothing changed.")
    else:
        messages.success(request, f"Set {key}; made release v{release.version}.")
    return _back(app, "config")


@login_required
@require_POST
def config_unset(request: HttpRequest, app: str) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    key = request.POST.get("key", "").strip()
    ok, release = attempt(
        request,
        releases_services.config_update,
        app=app,
        changes={key: None},
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if ok:
        if release is None:
            messages.info(request, f"{key} was not set; nothing changed.")
        else:
            messages.success(request, f"Unset {key}; made release v{release.version}.")
    return _back(app, "config")


def _optional_int(raw: str, field: str, process: str) -> int | None:
    raw = raw.strip()
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError({field: f"{process}: {raw[:20]!r} is not a whole number"}) from None


def _formation_changes(post) -> list[dict]:
    """The formation form as the service's list: replicas-<process>, memory_mb-<process>, cpu-<process>."""
    changes = []
    for name in post:
        if not name.startswith("replicas-"):
            continue
        process = name.removeprefix("replicas-")
        replicas = _optional_int(post[name], "replicas", process)
        if replicas is None:
            raise ValidationError({"replicas": f"{process}: give a number of processes"})
        item = {"process": process, "replicas": replicas}
        if f"memory_mb-{process}" in post:
            item["memory_mb"] = _optional_int(post[f"memory_mb-{process}"], "memory_mb", process)
        if f"cpu-{process}" in post:
            item["cpu"] = post[f"cpu-{process}"].strip() or None
        changes.append(item)
    return changes


@login_required
@require_POST
def formation_set(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)

    def scale():
        return formation_update(
            app=app,
            changes=_formation_changes(request.POST),
            actor=request.user,
            remote_addr=client_ip(request),
        )

    rows, errors = service_refusal(scale, fields=FORMATION_FIELDS)
    if errors:
        values = {name: value for name, value in request.POST.items() if name != "csrfmiddlewaretoken"}
        refused = {"formation": {"errors": formation_input_errors(errors), "values": values}}
        return app_page(request, app, role, refused=refused)
    summary = ", ".join(f"{row.process}={row.replicas}" for row in rows)
    messages.success(request, f"Formation saved: {summary}.")
    return _back(app, "processes")


@login_required
@require_POST
def domain_add(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    hostname = request.POST.get("hostname", "")
    domain, errors = service_refusal(
        apps_services.domain_add,
        fields=("hostname",),
        conflict_field="hostname",
        app=app,
        hostname=hostname,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        refused = {"domain_add": {"errors": errors, "values": {"hostname": hostname}}}
        return app_page(request, app, role, refused=refused)
    messages.success(request, f"Added {domain.hostname}.")
    return _back(app, "domains")


@login_required
@require_POST
def domain_remove(request: HttpRequest, app: str) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    hostname = request.POST.get("hostname", "").strip().lower().rstrip(".")
    domain = apps_selectors.domains_for_app(app=app).filter(hostname=hostname).first()
    if domain is None:
        messages.error(request, f"{hostname or 'that name'} is not a domain of {app.name}.")
        return _back(app, "domains")
    attempt(
        request,
        apps_services.domain_remove,
        domain=domain,
        actor=request.user,
        remote_addr=client_ip(request),
        success=f"Removed {hostname}.",
    )
    return _back(app, "domains")


@login_required
@require_POST
def rollback(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    raw = request.POST.get("version", "").strip().lstrip("vV")
    if not raw.isdigit():
        release, errors = None, {"form": "Choose a release to roll back to."}
    else:
        release, errors = service_refusal(
            release_rollback,
            fields=(),
            errors=(DeployError,),
            app=app,
            version=int(raw),
            actor=request.user,
            remote_addr=client_ip(request),
        )
    if errors:
        return app_page(
            request, app, role, refused={"rollback": {"errors": errors, "values": {"version": raw}}}
        )
    messages.success(request, f"Rolling back to v{raw}: made release v{release.version}.")
    return _back(app, "releases")


@login_required
@require_POST
def deploy_image(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    image = request.POST.get("image", "")
    build, errors = service_refusal(
        builds_services.image_deploy,
        fields=("image",),
        aliases={"image_ref": "image"},
        errors=(ValueError, builds_services.BuildConflict),
        app=app,
        image_ref=image,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        errors = {"image": " ".join(errors.values())}  # whatever the reason, it is about the image
        return app_page(
            request, app, role, refused={"deploy": {"errors": errors, "values": {"image": image}}}
        )
    return redirect("dashboard:build", app=app.name, build_id=build.pk)


@login_required
@require_POST
def app_settings(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    typed = {field: request.POST.get(field, getattr(app, field)) for field in apps_services.UPDATABLE_FIELDS}
    changes = {
        field: request.POST[field].strip()
        for field in apps_services.UPDATABLE_FIELDS
        if field in request.POST and request.POST[field].strip() != getattr(app, field)
    }
    _, errors = service_refusal(
        apps_services.app_update,
        fields=apps_services.UPDATABLE_FIELDS,
        app=app,
        changes=changes,
        actor=request.user,
        remote_addr=client_ip(request),
    )
    if errors:
        return app_page(request, app, role, refused={"settings": {"errors": errors, "values": typed}})
    messages.success(request, "Settings saved." if changes else "Nothing changed.")
    return _back(app, "settings")


@login_required
@require_POST
def app_destroy(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, ADMIN)
    confirm = request.POST.get("confirm", "")
    if confirm.strip() != app.name:
        errors = {"confirm": f"type the app's name ({app.name}) to confirm deleting it"}
    else:
        _, errors = service_refusal(
            apps_services.app_destroy, fields=(), app=app, actor=request.user, remote_addr=client_ip(request)
        )
    if errors:
        return app_page(
            request, app, role, refused={"destroy": {"errors": errors, "values": {"confirm": confirm}}}
        )
    messages.success(request, f"Deleted {app.name}.")
    return redirect("dashboard:apps")


# --- builds ---------------------------------------------------------------------------------------------------


def _stored_log(build) -> str:
    """A finished build's kept log; a running one's lines so far (the page's fallback when the socket fails)."""
    if build.is_finished:
        return build.log
    try:
        return "\n".join(builds_services.log_stream(build).read_all())
    except Exception as exc:  # Redis down: the page still renders, the socket may still work later
        logger.warning("build %s log unavailable: %s", build.pk, exc)
        return ""


@login_required
@require_GET
def build_detail(request: HttpRequest, app: str, build_id: int) -> HttpResponse:
    app, role = _app(request, app, VIEWER)
    build = build_for_app(app=app, build_id=build_id)
    if build is None:
        raise Http404(f"{app.name} has no build {build_id}")
    return page(
        request,
        "dashboard/build.html",
        {"app": app, "build": build, "log": _stored_log(build), "can_edit": role_at_least(role, MEMBER)},
    )


@login_required
@require_POST
def build_cancel(request: HttpRequest, app: str, build_id: int) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    build = build_for_app(app=app, build_id=build_id)
    if build is None:
        raise Http404(f"{app.name} has no build {build_id}")
    attempt(
        request,
        builds_services.build_cancel,
        errors=(ValueError,),
        build=build,
        actor=request.user,
        remote_addr=client_ip(request),
        success=f"Cancelling build {build.pk}.",
    )
    return redirect("dashboard:build", app=app.name, build_id=build.pk)
