"""API v1 for add-ons: a team's PostgreSQL and Redis servers, attached to its apps through config vars.

Every route is about the app in its path; the add-on is looked up in that app's team, so another team's add-on is
a 404 like another team's app.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as s
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.addons import selectors, services
from berth.addons.models import KINDS, PLANS, Addon
from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip, str_field

AddonAttachmentShape = S._shape("AddonAttachment", app=s.CharField(), config_var=s.CharField())
AddonShape = S._shape(
    "Addon",
    name=s.CharField(),
    kind=s.ChoiceField(choices=list(KINDS)),
    plan=s.CharField(),
    team=s.CharField(),
    created_at=s.DateTimeField(),
    attachments=AddonAttachmentShape(many=True),
)
AddonInfoShape = S._shape(
    "AddonInfo",
    base=AddonShape,
    version=s.CharField(allow_null=True),
    running=s.BooleanField(),
    size_bytes=s.IntegerField(allow_null=True),
    connections=s.IntegerField(allow_null=True),
    node=s.CharField(allow_null=True),
)
AddonCreateShape = S._shape(
    "AddonCreate",
    kind=s.ChoiceField(choices=list(KINDS)),
    plan=s.ChoiceField(choices=list(PLANS), required=False),
    name=s.CharField(required=False),
    **{"as": s.CharField(required=False, help_text="the config var is <AS>_URL")},
)
AddonAttachShape = S._shape(
    "AddonAttach", **{"as": s.CharField(required=False, help_text="the config var is <AS>_URL")}
)
AddonRunShape = S._shape("AddonRunRequest", args=s.ListField(child=s.CharField(allow_blank=True)))
AddonRunResultShape = S._shape(
    "AddonRunResult",
    exit_code=s.IntegerField(allow_null=True),
    output=s.CharField(allow_blank=True),
    timed_out=s.BooleanField(),
    seconds=s.FloatField(),
)
AddonRotatedShape = S._shape("AddonRotated", name=s.CharField(), seconds=s.FloatField())


def addon_repr(addon: Addon) -> dict:
    return {
        "name": addon.name,
        "kind": addon.kind,
        "plan": addon.plan,
        "team": addon.team.name,
        "created_at": addon.created_at,
        "attachments": [{"app": a.app.name, "config_var": a.config_var} for a in addon.attachments.all()],
    }


class AppAddonsView(AppScopedView):
    @extend_schema(
        responses=AddonShape(many=True),
        parameters=[OpenApiParameter("all", bool, description="the team's add-ons, not only this app's")],
    )
    def get(self, request, app: str):
        if request.query_params.get("all") in ("1", "true"):
            addons = selectors.addons_for_team(team=self.app.team)
        else:
            addons = selectors.addons_for_app(app=self.app)
        return Response([addon_repr(a) for a in addons])

    @extend_schema(request=AddonCreateShape, responses={201: AddonShape, 400: S.Error, 409: S.Error})
    def post(self, request, app: str):
        data = body(request)
        addon = services.addon_create(
            app=self.app,
            kind=str_field(data, "kind"),
            plan=str_field(data, "plan", required=False) or "small",
            name=str_field(data, "name", required=False),
            as_name=str_field(data, "as", required=False),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(addon_repr(addon), status=status.HTTP_201_CREATED)


class AppAddonScopedView(AppScopedView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.addon = selectors.addon_of_team(team=self.app.team, name=self.kwargs["addon"])


class AppAddonView(AppAddonScopedView):
    @extend_schema(responses={200: AddonInfoShape, 404: S.Error})
    def get(self, request, app: str, addon: str):
        return Response({**addon_repr(self.addon), **selectors.addon_status(addon=self.addon)})

    @extend_schema(
        responses={204: S.NoContent, 409: S.Error},
        description="Detach the add-on from every app, then remove its server and its volume: the data is gone.",
    )
    def delete(self, request, app: str, addon: str):
        services.addon_destroy(addon=self.addon, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppAddonAttachmentView(AppAddonScopedView):
    @extend_schema(request=AddonAttachShape, responses={201: AddonShape, 400: S.Error, 409: S.Error})
    def post(self, request, app: str, addon: str):
        services.addon_attach(
            addon=self.addon,
            app=self.app,
            as_name=str_field(body(request), "as", required=False),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        # read again: the attachments were prefetched before this one was made
        addon = selectors.addon_of_team(team=self.app.team, name=self.addon.name)
        return Response(addon_repr(addon), status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: S.NoContent, 400: S.Error})
    def delete(self, request, app: str, addon: str):
        services.addon_detach(
            addon=self.addon, app=self.app, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppAddonRotateView(AppAddonScopedView):
    @extend_schema(request=None, responses={200: AddonRotatedShape, 409: S.Error})
    def post(self, request, app: str, addon: str):
        seconds = services.addon_credentials_rotate(
            addon=self.addon, actor=request.user, remote_addr=client_ip(request)
        )
        return Response({"name": self.addon.name, "seconds": round(seconds, 3)})


class AppAddonRunView(AppAddonScopedView):
    @extend_schema(
        request=AddonRunShape,
        responses={200: AddonRunResultShape, 400: S.Error},
        description="psql or redis-cli with `args`, run once in the add-on's image on the team's network with the "
        "app's config var (pg:psql, redis:cli).",
    )
    def post(self, request, app: str, addon: str):
        args = body(request).get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValidationError({"args": "must be a list of strings"})
        result = services.addon_run(
            addon=self.addon, app=self.app, args=args, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(result.__dict__)
