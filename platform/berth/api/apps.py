"""API v1 for apps: the caller's apps, creating one (in a named team, the caller's only team, or a personal team
made for a caller in none), an app's detail, changing its settings, destroying it."""

from urllib.parse import urlencode

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts.models import Team
from berth.api import schema as S
from berth.api.certs import RouterUnavailable
from berth.api.common import AppScopedView, BerthAPIView, body, client_ip, str_field
from berth.api.formation import formation_repr
from berth.apps import selectors as apps_selectors
from berth.apps import services as apps_services
from berth.apps.models import App, app_url
from berth.certs import selectors as certs_selectors
from berth.certs import services as certs_services
from berth.releases import selectors as releases_selectors
from berth.routing.router import RouterError

HTTPS_FIELDS = ("https_redirect", "hsts")  # berth.certs' per-app policy, changed through the same PATCH
MAINTENANCE_FIELDS = ("maintenance", "maintenance_page")  # the router answers for the app (apps.services)
APPS_LIMIT_MAX = 1000  # a page of the apps list
APP_NAME_MAX = App._meta.get_field("name").max_length


def app_summary_repr(row: dict, *, serves_https: bool) -> dict:
    """An app of the list, from its row (berth.certs.selectors.app_summaries_page)."""
    return {
        "name": row["name"],
        "team": row["team_name"],
        "url": app_url(row["name"], serves_https=serves_https),
        "created_at": row["created_at"],
        "current_release": row["current_version"],
        "parent": row["parent_name"],
    }


def app_summaries_repr(rows: list[dict]) -> list[dict]:
    https = certs_selectors.apps_serving_https(rows)
    return [app_summary_repr(row, serves_https=row["id"] in https) for row in rows]


def app_detail_repr(app: App) -> dict:
    app = releases_selectors.app_detail(app=app)
    return {
        "name": app.name,
        "team": app.team.name,
        "url": app.url,
        "deploy_branch": app.deploy_branch,
        "health_check_path": app.health_check_path,
        "buildpack": app.buildpack,
        "created_at": app.created_at,
        "current_release": app.current_version,
        "domains": [d.hostname for d in apps_selectors.domains_for_app(app=app)],
        "formation": [formation_repr(f) for f in apps_selectors.formation_for_app(app=app)],
        "https_redirect": app.https_redirect,
        "hsts": app.hsts,
        "maintenance": app.maintenance,
        "maintenance_page": app.maintenance_page,
        "previews": app.previews,
        "preview_exclude": app.preview_exclude,
        "parent": app.parent.name if app.parent_id else None,
        "preview_branch": app.preview_branch,
    }


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= APPS_LIMIT_MAX:
        raise ValidationError({"limit": f"must be a whole number from 1 to {APPS_LIMIT_MAX}"})
    return limit


class AppListView(BerthAPIView):
    def permission_team(self, request) -> Team:
        # Only POST is team-scoped; the team comes from the body, or is the user's only team.
        if hasattr(self, "team"):
            return self.team
        name = body(request).get("team")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValidationError({"team": "must be a team name"})
            self.team = accounts_selectors.team_for_user(user=request.user, name=name)
            return self.team
        teams = accounts_selectors.teams_joined(user=request.user, limit=2)
        if len(teams) > 1:
            raise ValidationError({"team": "you are in several teams; name one"})
        if not teams:
            # Heroku's personal apps: a first app needs no team first. The request is checked before the team is
            # made, so a refused name leaves nothing behind.
            data = body(request)
            apps_services.app_create_check(
                name=data.get("name"),
                settings_={k: data[k] for k in apps_services.UPDATABLE_FIELDS if k in data},
            )
            teams = [
                accounts_services.personal_team_ensure(user=request.user, remote_addr=client_ip(request))
            ]
        self.team = teams[0]
        return self.team

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "limit",
                int,
                description=f"at most this many apps (1–{APPS_LIMIT_MAX}; default: every app); when more follow, "
                'the `Link` header names the next page (rel="next")',
            ),
            OpenApiParameter(
                "after", str, description="only apps whose name sorts after this one (the next page)"
            ),
            OpenApiParameter("q", str, description="only apps whose name contains this"),
        ],
        responses={200: S.AppSummary(many=True), 400: S.Error},
    )
    def get(self, request):
        limit = _limit(request.query_params.get("limit"))
        search = request.query_params.get("q", "").strip()[:APP_NAME_MAX]
        after = request.query_params.get("after", "")[:APP_NAME_MAX]
        page = certs_selectors.app_summaries_page(
            user=request.user, search=search, after=after, limit=None if limit is None else limit + 1
        )
        response = Response(app_summaries_repr(page[:limit]))
        if limit is not None and len(page) > limit:
            following = {"limit": limit, "after": page[limit - 1]["name"]} | ({"q": search} if search else {})
            response["Link"] = (
                f'<{request.build_absolute_uri(request.path)}?{urlencode(following)}>; rel="next"'
            )
        return response

    @extend_schema(
        request=S.AppCreate,
        responses={201: S.AppDetail, 400: S.Error, 409: S.Error},
        description="409: the name is taken, or the team is at its apps quota (the answer then also names the "
        "`quota`, its `limit`, the `usage` and what was `requested`).",
    )
    def post(self, request):
        data = body(request)
        name = str_field(data, "name")
        settings_ = {k: data[k] for k in apps_services.UPDATABLE_FIELDS if k in data}
        app = apps_services.app_create(
            team=self.team, name=name, actor=request.user, remote_addr=client_ip(request), **settings_
        )
        return Response(app_detail_repr(app), status=201)


class AppView(AppScopedView):
    @extend_schema(responses=S.AppDetail)
    def get(self, request, app: str):
        return Response(app_detail_repr(self.app))

    @extend_schema(
        request=S.AppChange,
        responses={200: S.AppDetail, 400: S.Error, 503: S.Error},
        description="https_redirect and hsts apply at once to every hostname a certificate serves; maintenance "
        "(and maintenance_page, HTML up to 8 KB; empty: Berth's page) makes the router answer every hostname of the "
        "app with 503 and Retry-After while its processes keep running (503 and nothing of them changed if the "
        "router did not take it).",
    )
    def patch(self, request, app: str):
        data = dict(body(request))
        https = {field: data.pop(field) for field in HTTPS_FIELDS if field in data}
        for field, value in https.items():
            if not isinstance(value, bool):
                raise ValidationError({field: "must be true or false"})
        maintenance = {field: data.pop(field) for field in MAINTENANCE_FIELDS if field in data}
        if "maintenance_page" in maintenance and "maintenance" not in maintenance:
            maintenance["maintenance"] = self.app.maintenance  # a new page for the mode the app is in
        if maintenance and not isinstance(maintenance["maintenance"], bool):
            raise ValidationError({"maintenance": "must be true or false"})
        # the settings first: their only failure is a refused value, checked before anything is written; then
        # the router's policy, which changes nothing when the router fails
        apps_services.app_update(
            app=self.app, changes=data, actor=request.user, remote_addr=client_ip(request)
        )
        if https:
            try:
                self.app = certs_services.app_https_update(
                    app=self.app, actor=request.user, remote_addr=client_ip(request), **https
                )
            except RouterError as exc:
                raise RouterUnavailable(
                    f"the router did not take the change ({exc}); try again shortly"
                ) from exc
        if maintenance:
            try:
                self.app = apps_services.app_maintenance_set(
                    app=self.app,
                    enabled=maintenance["maintenance"],
                    page=maintenance.get("maintenance_page"),
                    actor=request.user,
                    remote_addr=client_ip(request),
                )
            except RouterError as exc:
                raise RouterUnavailable(
                    f"the router did not take the change ({exc}); try again shortly"
                ) from exc
        return Response(app_detail_repr(self.app))

    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str):
        apps_services.app_destroy(app=self.app, actor=request.user, remote_addr=client_ip(request))
        return Response(status=204)
