"""API v1 for an app that follows a git repository elsewhere (berth.builds.sources): the URL, and the webhook
the repository's host calls on a push (its secret shown once, when set)."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip, str_field
from berth.builds import sources


def source_repr(request, app) -> dict:
    return {
        "url": app.source_url or None,
        "webhook_url": request.build_absolute_uri(reverse("source-webhook", kwargs={"app": app.name}))
        if app.source_url
        else None,
    }


class AppSourceView(AppScopedView):
    @extend_schema(responses=S.AppSource)
    def get(self, request, app: str):
        return Response(source_repr(request, self.app))

    @extend_schema(
        request=S.AppSourceSet,
        responses={200: S.AppSourceSecret, 400: S.Error},
        description="Follow a git repository: its push webhook (the URL and secret answered, the secret only "
        "now) makes Berth fetch and deploy pushes of the app's deploy branch. Setting it again makes a new secret.",
    )
    def put(self, request, app: str):
        url = str_field(body(request), "url")
        secret = sources.source_set(app=self.app, url=url, actor=request.user, remote_addr=client_ip(request))
        return Response(source_repr(request, self.app) | {"secret": secret})

    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str):
        sources.source_remove(app=self.app, actor=request.user, remote_addr=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
