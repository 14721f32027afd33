from django.http import Http404

from berth.accounts.selectors import user_role
from berth.pipelines.models import Pipeline, PipelineApp


def pipeline_for_user(*, user, name: str) -> Pipeline:
    """The pipeline by name if the user is in its team (a superuser sees every one); Http404 otherwise."""
    pipeline = Pipeline.objects.select_related("team").filter(name=name).first()
    if pipeline is None or user_role(user=user, team=pipeline.team) is None:
        raise Http404(f"pipeline {name!r} not found")
    return pipeline


def pipelines_for_user(*, user) -> list[Pipeline]:
    """The pipelines of the user's teams, with their apps in stage order, in two queries."""
    pipelines = Pipeline.objects.select_related("team").prefetch_related("couplings__app")
    if not user.is_superuser:
        pipelines = pipelines.filter(team__memberships__user=user)
    return list(pipelines.order_by("name"))


def pipeline_apps(pipeline: Pipeline) -> list[PipelineApp]:
    return list(pipeline.couplings.select_related("app").order_by("app__name"))
