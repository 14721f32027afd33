"""API v1 for pipelines: a team's apps in stages, and promotion of an app's live image to the next stage."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.accounts import selectors as accounts_selectors
from berth.accounts.models import Team
from berth.api import schema as S
from berth.api.common import AppScopedView, BerthAPIView, ConflictError, body, client_ip, str_field
from berth.apps import selectors as apps_selectors
from berth.deploys.errors import NothingLive
from berth.pipelines import selectors, services
from berth.pipelines.models import STAGE_ORDER, Pipeline


def pipeline_repr(pipeline: Pipeline) -> dict:
    couplings = sorted(pipeline.couplings.all(), key=lambda c: (STAGE_ORDER.index(c.stage), c.app.name))
    return {
        "name": pipeline.name,
        "team": pipeline.team.name,
        "created_at": pipeline.created_at,
        "apps": [{"app": c.app.name, "stage": c.stage} for c in couplings],
    }


class PipelineListView(BerthAPIView):
    def permission_team(self, request) -> Team:
        # POST only: the team named in the body, or the caller's only team
        name = body(request).get("team")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValidationError({"team": "must be a team name"})
            self.team = accounts_selectors.team_for_user(user=request.user, name=name)
            return self.team
        teams = accounts_selectors.teams_joined(user=request.user, limit=2)
        if len(teams) != 1:
            raise ValidationError(
                {"team": "you are in no team" if not teams else "you are in several teams; name one"}
            )
        self.team = teams[0]
        return self.team

    @extend_schema(responses=S.Pipeline(many=True))
    def get(self, request):
        return Response([pipeline_repr(p) for p in selectors.pipelines_for_user(user=request.user)])

    @extend_schema(request=S.PipelineCreate, responses={201: S.Pipeline, 400: S.Error, 409: S.Error})
    def post(self, request):
        name = str_field(body(request), "name")
        pipeline = services.pipeline_create(
            team=self.team, name=name, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(pipeline_repr(pipeline), status=status.HTTP_201_CREATED)


class PipelineScopedView(BerthAPIView):
    def permission_team(self, request) -> Team:
        self.pipeline = selectors.pipeline_for_user(user=request.user, name=self.kwargs["pipeline"])
        return self.pipeline.team


class PipelineView(PipelineScopedView):
    @extend_schema(responses=S.Pipeline)
    def get(self, request, pipeline: str):
        return Response(pipeline_repr(self.pipeline))

    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, pipeline: str):
        services.pipeline_destroy(pipeline=self.pipeline, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PipelineAppsView(PipelineScopedView):
    @extend_schema(request=S.PipelineAppSet, responses={200: S.Pipeline, 400: S.Error})
    def post(self, request, pipeline: str):
        data = body(request)
        app = apps_selectors.app_for_user(user=request.user, name=str_field(data, "app"), min_role="member")
        services.pipeline_app_set(
            pipeline=self.pipeline,
            app=app,
            stage=str_field(data, "stage"),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(pipeline_repr(self.pipeline))


class PipelineAppView(PipelineScopedView):
    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, pipeline: str, app: str):
        target = apps_selectors.app_for_user(user=request.user, name=app, min_role="member")
        if getattr(getattr(target, "pipeline_coupling", None), "pipeline_id", None) != self.pipeline.pk:
            raise ValidationError({"app": f"{app} is not in pipeline {self.pipeline.name}"})
        services.pipeline_app_remove(app=target, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppPromoteView(AppScopedView):
    @extend_schema(
        request=S.Promote,
        responses={202: S.Promotion(many=True), 400: S.Error, 409: S.Error},
        description="Deploy the app's live image (the same digest, no rebuild) to the apps of the next stage of its "
        "pipeline, or those of them named in `to`, each with its own config vars; each deploy is a build to "
        "follow (`build`), or says why none was queued (`error`).",
    )
    def post(self, request, app: str):
        to = body(request).get("to")
        if to is not None and (not isinstance(to, list) or not all(isinstance(n, str) for n in to)):
            raise ValidationError({"to": "must be a list of app names"})
        try:
            outcomes = services.promote(
                app=self.app, actor=request.user, to=to, remote_addr=client_ip(request)
            )
        except NothingLive as exc:
            raise ConflictError(str(exc)) from exc
        return Response([o.__dict__ for o in outcomes], status=status.HTTP_202_ACCEPTED)
