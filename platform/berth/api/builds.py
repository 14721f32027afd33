"""API v1 for builds: list, detail (with log), live output, cancel, and deploys from an image reference."""

from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_fields
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, ConflictError, body, client_ip
from berth.builds import selectors, services
from berth.builds.logstream import End, LeftOut, Line, build_output
from berth.builds.models import Build
from berth.core.lines import MORE
from berth.core.redis import async_redis_client
from berth.observe.hub import SOCKET_TIMEOUT_S


def build_repr(build: Build, *, with_log: bool = False) -> dict:
    data = {
        "id": build.pk,
        "app": build.app.name,
        "source": build.source,
        "status": build.status,
        "status_reason": build.status_reason,
        "buildpack": build.buildpack,
        "git_ref": build.git_ref,
        "git_sha": build.git_sha,
        "image_ref": build.image_ref,
        "image": build.image,
        "release": build.release.version if build.release_id else None,
        "created_by": build.created_by.get_username() if build.created_by_id else None,
        "created_at": build.created_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
        "worker": build.worker,
    }
    if with_log:
        # a build's row says it finished a moment before its log is saved on it (berth.builds.services
        # .build_log_finish): until then, and while the build runs, its lines are the stream's
        saved = build.log if build.is_finished else ""
        data["log"] = saved or "\n".join(services.log_stream(build).read_all())
    return data


class AppBuildsView(AppScopedView):
    @extend_schema(responses=S.Build(many=True), description="The app's latest 50 builds, newest first.")
    def get(self, request, app: str):
        return Response([build_repr(b) for b in selectors.builds_for_app(app=self.app, limit=50)])


class AppBuildView(AppScopedView):
    @extend_schema(responses=S.BuildDetail)
    def get(self, request, app: str, build_id: int):
        return Response(build_repr(selectors.build_for_app(app=self.app, build_id=build_id), with_log=True))


class AppBuildCancelView(AppScopedView):
    @extend_schema(request=None, responses={200: S.Build, 409: S.Error})
    def post(self, request, app: str, build_id: int):
        build = selectors.build_for_app(app=self.app, build_id=build_id)
        try:
            build = services.build_cancel(build=build, actor=request.user, remote_addr=client_ip(request))
        except ValueError as exc:
            raise ConflictError(str(exc)) from exc
        return Response(build_repr(build))


class AppBuildCacheView(AppScopedView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "BuildCacheCleared", {"app": drf_fields.CharField(), "cleared": drf_fields.BooleanField()}
            )
        },
    )
    def delete(self, request, app: str):
        cleared = services.build_cache_clear(app=self.app, actor=request.user, remote_addr=client_ip(request))
        return Response({"app": self.app.name, "cleared": cleared})


def _left_out_note(build: Build, left_out: int) -> bytes:
    return (
        f"[{left_out} earlier lines of build {build.pk} are left out: a replay sends at most the last "
        f"{settings.BERTH_LOG_REPLAY_MAX_LINES} lines and {settings.BERTH_LOG_REPLAY_MAX_BYTES} bytes]\n"
    ).encode()


def _piece(fields: dict[str, str]) -> bytes:
    # a piece of a long line (berth.core.lines) goes on in the next entry: no newline between them
    return fields.get("line", "").encode() + (b"" if MORE in fields else b"\n")


def _render(build: Build, item: LeftOut | Line | End) -> bytes:
    """One item of berth.builds.logstream's build output as the text this view streams."""
    match item:
        case LeftOut(count=left_out):
            return _left_out_note(build, left_out)
        case Line(text=text, more=more):
            return _piece({"line": text, **({MORE: "1"} if more else {})})
        case End(status=status):
            return f"[build {build.pk} {status}]\n".encode()


async def _output_async(build: Build) -> AsyncIterator[bytes]:
    """The build's output on the event loop (redis.asyncio): an open stream holds no thread of the web process."""
    # its reads must outlast build_output's blocking XREAD
    client = async_redis_client(socket_timeout=SOCKET_TIMEOUT_S)
    try:
        async for item in build_output(client, build, timeout=services.follow_timeout()):
            yield _render(build, item)
    finally:
        await client.aclose()


class AppBuildOutputView(AppScopedView):
    """The build's lines as plain text, streamed until it ends (what `berth builds:output` and deploys follow).

    A replay from the start holds at most BERTH_LOG_REPLAY_MAX_LINES lines / _BYTES bytes: the newest, after a
    note saying how many were left out."""

    @extend_schema(responses={(200, "text/plain"): S.BuildOutput})
    def get(self, request, app: str, build_id: int):
        build = selectors.build_for_app(app=self.app, build_id=build_id)
        if hasattr(request, "scope"):  # ASGI: on the event loop
            return StreamingHttpResponse(_output_async(build), content_type="text/plain; charset=utf-8")
        stream = services.log_stream(build)

        def lines():  # WSGI (tests, runserver): a thread per request is how WSGI serves anyway
            start, left_out = stream.replay_start(
                max_lines=settings.BERTH_LOG_REPLAY_MAX_LINES, max_bytes=settings.BERTH_LOG_REPLAY_MAX_BYTES
            )
            if left_out:
                yield _left_out_note(build, left_out)
            for _, fields in stream.follow_fields(last_id=start, timeout=services.follow_timeout()):
                yield _piece(fields)
            build.refresh_from_db()
            yield f"[build {build.pk} {build.status}]\n".encode()

        return StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")


class AppDeploysView(AppScopedView):
    @extend_schema(
        request=S.ImageDeploy,
        responses={202: S.Build, 409: S.Error},
        description="Deploy an image built elsewhere: a build of source `image` that pulls it; 202 queued.",
    )
    def post(self, request, app: str):
        data = body(request)
        image = data.get("image")
        if not isinstance(image, str) or not image.strip():
            raise ValidationError({"image": "is required: an image reference such as registry:5000/name:tag"})
        try:
            build = services.image_deploy(
                app=self.app, image_ref=image, actor=request.user, remote_addr=client_ip(request)
            )
        except ValueError as exc:
            raise ValidationError({"image": str(exc)}) from exc
        except services.BuildConflict as exc:
            raise ConflictError(str(exc)) from exc
        return Response(build_repr(build), status=status.HTTP_202_ACCEPTED)
