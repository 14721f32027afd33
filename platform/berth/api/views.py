"""REST API v1, as in the API contract shared with the CLI. Views parse, call a selector or service, render."""

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from berth.accounts import selectors as accounts_selectors
from berth.accounts import services as accounts_services
from berth.accounts import throttles as accounts_throttles
from berth.accounts.errors import Conflict
from berth.accounts.models import ApiToken, Invitation, Membership, Team
from berth.accounts.roles import VIEWER
from berth.api import schema as S
from berth.api.openapi import BerthSchema
from berth.api.permissions import RolePermission
from berth.apps import quotas
from berth.apps import selectors as apps_selectors
from berth.apps import services as apps_services
from berth.apps.models import App, Domain, Formation
from berth.audit.selectors import audit_events_for_team
from berth.core.bodylimit import too_large_detail
from berth.deploys.formation import formation_update
from berth.nodes.services import constraints_display
from berth.releases import selectors as releases_selectors
from berth.releases import services as releases_services
from berth.releases.models import Release
from berth.releases.selectors import release_for_app, releases_for_app

# Bodies of API v1 are a few fields (a config change is the largest). The ASGI door (berth.core.bodylimit) refuses
# bigger ones before Django stores them; this same rule, checked again here, covers servers without that door.
MAX_BODY_BYTES = settings.BERTH_MAX_REQUEST_BYTES


class ConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"
    default_code = "conflict"


class GuardUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "signing in is unavailable right now; try again shortly"
    default_code = "unavailable"


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = too_large_detail(MAX_BODY_BYTES)
    default_code = "too_large"


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _body(request, kind=dict):
    data = request.data
    if not isinstance(data, kind):
        raise ValidationError({"body": f"must be a JSON {'object' if kind is dict else 'array'}"})
    return data


def _str_field(data: dict, field: str, *, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError({field: "is required (a non-empty string)"})
    return value


# --- representations -------------------------------------------------------------------------------------


def _formation(row: Formation) -> dict:
    return {
        "process": row.process,
        "replicas": row.replicas,
        "memory_mb": row.memory_mb,
        "cpu": float(row.cpu) if row.cpu is not None else None,
        "constraints": constraints_display(row.constraints),
    }


def _app_summary(app: App) -> dict:
    return {
        "name": app.name,
        "team": app.team.name,
        "url": app.url,
        "created_at": app.created_at,
        "current_release": app.current_version,
    }


def _app_detail(app: App) -> dict:
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
        "formation": [_formation(f) for f in apps_selectors.formation_for_app(app=app)],
    }


def _release(release: Release) -> dict:
    return {
        "version": release.version,
        "image": release.image,
        "description": release.description,
        "status": release.status,
        "created_by": release.created_by.get_username() if release.created_by else None,
        "created_at": release.created_at,
        "config_keys": release.config_keys,
        "procfile": release.procfile,
    }


def _token_created(token: ApiToken, clear: str) -> dict:
    return {"id": token.pk, "name": token.name, "token": clear, "expires_at": token.expires_at}


def _invitation(invitation: Invitation, token: str | None = None) -> dict:
    data = {
        "id": invitation.pk,
        "email": invitation.email,
        "role": invitation.role,
        "expires_at": invitation.expires_at,
        "created_at": invitation.created_at,
    }
    if token is not None:
        data["token"] = token
    return data


# --- base views --------------------------------------------------------------------------------------------


class BerthAPIView(APIView):
    """Maps service errors to HTTP: Django's ValidationError -> 400 naming the field, Conflict -> 409."""

    permission_classes = [RolePermission]
    schema = BerthSchema()

    def initial(self, request, *args, **kwargs):
        # Before authentication: some permission checks read the body (the team of a new app). DRF parses only
        # what Content-Length announces (a body without one reads as empty), so the header is enough to check.
        length = request.META.get("CONTENT_LENGTH") or "0"
        if request.method in ("POST", "PUT", "PATCH") and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyTooLarge()
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, DjangoValidationError):
            detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
            exc = ValidationError(detail)
        elif isinstance(exc, quotas.QuotaExceeded):
            # 409 with the quota, its limit and the usage beside the one-line detail (set as is: DRF would
            # turn the numbers into strings)
            fields, exc = exc.as_dict(), ConflictError(str(exc))
            exc.detail = fields
        elif isinstance(exc, Conflict):
            exc = ConflictError(str(exc))
        elif isinstance(exc, DjangoPermissionDenied):
            exc = PermissionDenied(str(exc) or None)
        elif isinstance(exc, accounts_throttles.GuardUnavailable):
            exc = GuardUnavailable(f"{exc}; try again shortly")
        elif isinstance(exc, accounts_throttles.Throttled):
            # 429 with Retry-After (DRF's handler adds the header from `wait`); the detail already says when
            throttled = Throttled(detail=str(exc))
            throttled.wait = exc.retry_after
            exc = throttled
        return super().handle_exception(exc)

    def permission_team(self, request) -> Team:
        raise NotImplementedError


class TeamScopedView(BerthAPIView):
    def permission_team(self, request) -> Team:
        if not hasattr(self, "team"):
            self.team = accounts_selectors.team_for_user(user=request.user, name=self.kwargs["team"])
        return self.team


class AppScopedView(BerthAPIView):
    def permission_team(self, request) -> Team:
        if not hasattr(self, "app"):
            # The role check itself is the permission class's; here the app is only found (404 if unseen).
            self.app = apps_selectors.app_for_user(
                user=request.user, name=self.kwargs["app"], min_role=VIEWER
            )
        return self.app.team


# --- auth, me, tokens -------------------------------------------------------------------------------------


class AuthTokenView(BerthAPIView):
    authentication_classes = []  # a stale header must not stop someone signing in again

    @extend_schema(request=S.SignIn, responses={201: S.TokenCreated, 400: S.Error, 429: S.Error})
    def post(self, request):
        data = _body(request)
        username = _str_field(data, "username")
        password = _str_field(data, "password")
        name = data.get("name") or "cli"
        user = accounts_services.sign_in(
            request=request, username=username, password=password, remote_addr=_client_ip(request)
        )
        if user is None:
            raise ValidationError({"detail": "wrong username or password"})
        token, clear = accounts_services.token_create(
            user=user, name=name, expires_in_days=data.get("expires_in_days"), remote_addr=_client_ip(request)
        )
        return Response(_token_created(token, clear), status=201)


class MeView(BerthAPIView):
    @extend_schema(responses=S.Me)
    def get(self, request):
        user = request.user
        teams = Membership.objects.filter(user=user).select_related("team").order_by("team__name")
        return Response(
            {
                "username": user.get_username(),
                "email": user.email,
                "is_superuser": user.is_superuser,
                "teams": [{"name": m.team.name, "role": m.role} for m in teams],
            }
        )


class TokenListView(BerthAPIView):
    @extend_schema(responses=S.Token(many=True))
    def get(self, request):
        tokens = ApiToken.objects.filter(user=request.user, revoked_at=None).order_by("-created_at")
        return Response(
            [
                {
                    "id": t.pk,
                    "name": t.name,
                    "created_at": t.created_at,
                    "last_used_at": t.last_used_at,
                    "expires_at": t.expires_at,
                }
                for t in tokens
            ]
        )

    @extend_schema(request=S.TokenCreate, responses={201: S.TokenCreated, 429: S.Error})
    def post(self, request):
        data = _body(request)
        name = _str_field(data, "name")
        accounts_throttles.token_creation_take(user=request.user, remote_addr=_client_ip(request))
        token, clear = accounts_services.token_create(
            user=request.user,
            name=name,
            expires_in_days=data.get("expires_in_days"),
            remote_addr=_client_ip(request),
        )
        return Response(_token_created(token, clear), status=201)


class TokenView(BerthAPIView):
    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, pk: int):
        token = ApiToken.objects.filter(user=request.user, pk=pk, revoked_at=None).first()
        if token is None:
            raise Http404("token not found")
        accounts_services.token_revoke(token=token, actor=request.user, remote_addr=_client_ip(request))
        return Response(status=204)


# --- teams ---------------------------------------------------------------------------------------------------


class TeamListView(BerthAPIView):
    @extend_schema(responses=S.Team(many=True))
    def get(self, request):
        teams = accounts_selectors.teams_for_user(user=request.user)
        return Response(
            [
                {
                    "name": t.name,
                    "role": t.role or ("owner" if request.user.is_superuser else None),
                    "created_at": t.created_at,
                }
                for t in teams
            ]
        )

    @extend_schema(request=S.Name, responses={201: S.Team, 409: S.Error})
    def post(self, request):
        name = _str_field(_body(request), "name")
        team = accounts_services.team_create(name=name, actor=request.user, remote_addr=_client_ip(request))
        return Response({"name": team.name, "role": "owner", "created_at": team.created_at}, status=201)


class TeamMembersView(TeamScopedView):
    @extend_schema(responses=S.Member(many=True))
    def get(self, request, team: str):
        members = accounts_selectors.team_members(team=self.team)
        return Response(
            [{"username": m.user.get_username(), "email": m.user.email, "role": m.role} for m in members]
        )

    @extend_schema(request=S.MemberAdd, responses={201: S.Member, 409: S.Error})
    def post(self, request, team: str):
        data = _body(request)
        role = _str_field(data, "role")
        username, email = data.get("username"), data.get("email")
        if not username and not email:
            raise ValidationError({"username": "send username or email"})
        user = accounts_selectors.user_to_add(actor=request.user, username=username, email=email)
        if user is None:
            # the same answer for a stranger's username as for one nobody has: probing names learns nothing
            if username:
                raise ValidationError(
                    {"username": "no such user in your teams; add them by email or invite them"}
                )
            raise ValidationError({"email": "no such user; invite them by email instead"})
        membership = accounts_services.membership_add(
            team=self.team, user=user, role=role, actor=request.user, remote_addr=_client_ip(request)
        )
        return Response(
            {"username": user.get_username(), "email": user.email, "role": membership.role}, status=201
        )


class TeamMemberView(TeamScopedView):
    def _membership(self, username: str) -> Membership:
        membership = (
            Membership.objects.select_related("user", "team")
            .filter(team=self.team, user__username=username)
            .first()
        )
        if membership is None:
            raise Http404(f"{username} is not a member of {self.team.name}")
        return membership

    @extend_schema(request=S.RoleChange, responses={200: S.Member, 409: S.Error})
    def patch(self, request, team: str, username: str):
        role = _str_field(_body(request), "role")
        membership = accounts_services.membership_role_change(
            membership=self._membership(username),
            role=role,
            actor=request.user,
            remote_addr=_client_ip(request),
        )
        user = membership.user
        return Response({"username": user.get_username(), "email": user.email, "role": membership.role})

    @extend_schema(responses={204: S.NoContent, 409: S.Error})
    def delete(self, request, team: str, username: str):
        accounts_services.membership_remove(
            membership=self._membership(username), actor=request.user, remote_addr=_client_ip(request)
        )
        return Response(status=204)


class TeamInvitationsView(TeamScopedView):
    @extend_schema(responses=S.Invitation(many=True))
    def get(self, request, team: str):
        return Response([_invitation(i) for i in accounts_selectors.pending_invitations(team=self.team)])

    @extend_schema(request=S.InvitationCreate, responses={201: S.Invitation})
    def post(self, request, team: str):
        data = _body(request)
        invitation, token = accounts_services.invitation_create(
            team=self.team,
            email=_str_field(data, "email"),
            role=_str_field(data, "role"),
            actor=request.user,
            remote_addr=_client_ip(request),
        )
        return Response(_invitation(invitation, token), status=201)


class TeamInvitationView(TeamScopedView):
    @extend_schema(responses={204: S.NoContent, 409: S.Error})
    def delete(self, request, team: str, pk: int):
        invitation = accounts_selectors.pending_invitations(team=self.team).filter(pk=pk).first()
        if invitation is None:
            raise Http404("invitation not found")
        accounts_services.invitation_revoke(
            invitation=invitation, actor=request.user, remote_addr=_client_ip(request)
        )
        return Response(status=204)


class InvitationAcceptView(BerthAPIView):
    @extend_schema(request=S.InvitationAccept, responses={200: S.Joined, 404: S.Error, 409: S.Error})
    def post(self, request):
        token = _str_field(_body(request), "token")
        membership = accounts_services.invitation_accept(
            token=token, user=request.user, remote_addr=_client_ip(request)
        )
        return Response({"team": membership.team.name, "role": membership.role})


class TeamAuditView(TeamScopedView):
    @extend_schema(responses=S.AuditEvent(many=True))
    def get(self, request, team: str):
        return Response(
            [
                {
                    "actor": e.actor.get_username() if e.actor else None,
                    "action": e.action,
                    "target": e.target,
                    "created_at": e.created_at,
                    "remote_addr": e.remote_addr,
                    "data": e.data,
                }
                for e in audit_events_for_team(team=self.team)
            ]
        )


class TeamQuotasView(TeamScopedView):
    """A team's quotas and usage: members read them; only platform admins (superusers) change them."""

    def permission_team(self, request) -> Team:
        if request.method != "GET" and not hasattr(self, "team"):
            # PLATFORM_ADMIN: a superuser sets any team's quotas, member of it or not
            self.team = Team.objects.filter(name=self.kwargs["team"]).first()
            if self.team is None:
                raise Http404("no such team")
        return super().permission_team(request)

    @extend_schema(responses=S.TeamQuotas)
    def get(self, request, team: str):
        return Response(quotas.team_quotas(team=self.permission_team(request)))

    @extend_schema(
        request=S.TeamQuotasChange,
        responses=S.TeamQuotas,
        description="Set the team's quotas (platform admins): a number (0 is no limit), or null for the "
        "installation's default (BERTH_TEAM_MAX_APPS, BERTH_TEAM_MAX_REPLICAS, BERTH_TEAM_MAX_MEMORY_MB).",
    )
    def patch(self, request, team: str):
        return Response(
            quotas.team_quotas_set(
                team=self.permission_team(request),
                changes=_body(request),
                actor=request.user,
                remote_addr=_client_ip(request),
            )
        )


# --- apps ----------------------------------------------------------------------------------------------------


class AppListView(BerthAPIView):
    def permission_team(self, request) -> Team:
        # Only POST is team-scoped; the team comes from the body, or is the user's only team.
        if hasattr(self, "team"):
            return self.team
        name = _body(request).get("team")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValidationError({"team": "must be a team name"})
            self.team = accounts_selectors.team_for_user(user=request.user, name=name)
            return self.team
        teams = list(Team.objects.filter(memberships__user=request.user)[:2])
        if len(teams) != 1:
            raise ValidationError(
                {
                    "team": "you are in no team; create one first"
                    if not teams
                    else "you are in several teams; name one"
                }
            )
        self.team = teams[0]
        return self.team

    @extend_schema(responses=S.AppSummary(many=True))
    def get(self, request):
        return Response([_app_summary(app) for app in releases_selectors.apps_for_user(user=request.user)])

    @extend_schema(
        request=S.AppCreate,
        responses={201: S.AppDetail, 400: S.Error, 409: S.Error},
        description="409: the name is taken, or the team is at its apps quota (the answer then also names the "
        "`quota`, its `limit`, the `usage` and what was `requested`).",
    )
    def post(self, request):
        data = _body(request)
        name = _str_field(data, "name")
        settings_ = {k: data[k] for k in apps_services.UPDATABLE_FIELDS if k in data}
        app = apps_services.app_create(
            team=self.team, name=name, actor=request.user, remote_addr=_client_ip(request), **settings_
        )
        return Response(_app_detail(app), status=201)


class AppView(AppScopedView):
    @extend_schema(responses=S.AppDetail)
    def get(self, request, app: str):
        return Response(_app_detail(self.app))

    @extend_schema(request=S.AppChange, responses=S.AppDetail)
    def patch(self, request, app: str):
        data = _body(request)
        apps_services.app_update(
            app=self.app, changes=dict(data), actor=request.user, remote_addr=_client_ip(request)
        )
        return Response(_app_detail(self.app))

    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str):
        apps_services.app_destroy(app=self.app, actor=request.user, remote_addr=_client_ip(request))
        return Response(status=204)


class AppConfigView(AppScopedView):
    @extend_schema(responses=S.Config)
    def get(self, request, app: str):
        return Response(apps_selectors.config_for_app(app=self.app))

    @extend_schema(request=S.ConfigChange, responses=S.Config)
    def patch(self, request, app: str):
        releases_services.config_update(
            app=self.app, changes=_body(request), actor=request.user, remote_addr=_client_ip(request)
        )
        return Response(apps_selectors.config_for_app(app=self.app))


class AppFormationView(AppScopedView):
    @extend_schema(responses=S.Formation(many=True))
    def get(self, request, app: str):
        return Response([_formation(f) for f in apps_selectors.formation_for_app(app=self.app)])

    @extend_schema(
        request=S.FormationChange(many=True),
        responses={200: S.Formation(many=True), 409: S.Error},
        description="409: the change would take the team above its replicas or memory quota (the answer "
        "also names the `quota`, its `limit`, the `usage` and what was `requested`).",
    )
    def patch(self, request, app: str):
        rows = formation_update(
            app=self.app, changes=_body(request, list), actor=request.user, remote_addr=_client_ip(request)
        )
        return Response([_formation(f) for f in rows])


class AppDomainsView(AppScopedView):
    @extend_schema(responses=S.Domain(many=True))
    def get(self, request, app: str):
        return Response(
            [
                {"hostname": d.hostname, "created_at": d.created_at}
                for d in apps_selectors.domains_for_app(app=self.app)
            ]
        )

    @extend_schema(request=S.DomainAdd, responses={201: S.Domain, 409: S.Error})
    def post(self, request, app: str):
        hostname = _str_field(_body(request), "hostname")
        domain = apps_services.domain_add(
            app=self.app, hostname=hostname, actor=request.user, remote_addr=_client_ip(request)
        )
        return Response({"hostname": domain.hostname, "created_at": domain.created_at}, status=201)


class AppDomainView(AppScopedView):
    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str, hostname: str):
        domain = Domain.objects.filter(app=self.app, hostname=hostname.lower().rstrip(".")).first()
        if domain is None:
            raise Http404(f"{hostname} is not a domain of {self.app.name}")
        apps_services.domain_remove(domain=domain, actor=request.user, remote_addr=_client_ip(request))
        return Response(status=204)


class AppReleasesView(AppScopedView):
    @extend_schema(responses=S.Release(many=True))
    def get(self, request, app: str):
        return Response([_release(r) for r in releases_for_app(app=self.app)])


class AppReleaseView(AppScopedView):
    @extend_schema(responses=S.Release)
    def get(self, request, app: str, version: int):
        return Response(_release(release_for_app(app=self.app, version=version)))
