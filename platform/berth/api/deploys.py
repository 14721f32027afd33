"""API v1 for what runs: processes (ps), rollbacks and one-off runs."""

from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, ConflictError, body, client_ip
from berth.api.releases import release_repr
from berth.core.streaming import streamed
from berth.deploys.errors import DeployError, NothingLive
from berth.deploys.formation import restart_request
from berth.deploys.oneoff import oneoff_info, oneoff_output, oneoff_start
from berth.deploys.rollout import release_rollback
from berth.deploys.selectors import app_processes
from berth.nodes.selectors import process_rows_visible_to
from berth.releases.services import ImagePruned
from berth.runtime.scheduler import SchedulerError


class AppProcessesView(AppScopedView):
    @extend_schema(responses=S.Process(many=True), description="What runs for the app: one row per task.")
    def get(self, request, app: str):
        rows = app_processes(app=self.app)
        return Response(process_rows_visible_to(user=request.user, rows=rows))


class AppRollbackView(AppScopedView):
    @extend_schema(
        request=S.Rollback,
        responses={201: S.Release, 409: S.Error},
        description="A new release like an earlier one (409 if the image GC removed that release's image).",
    )
    def post(self, request, app: str):
        data = body(request)
        version = data.get("version")
        if isinstance(version, str) and version.lower().startswith("v"):
            version = version[1:]
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ValidationError({"version": "is required: a release number such as 3 or v3"}) from None
        try:
            release = release_rollback(
                app=self.app, version=version, actor=request.user, remote_addr=client_ip(request)
            )
        except DeployError as exc:
            raise NotFound(str(exc)) from exc
        except ImagePruned as exc:  # the image GC removed that release's image: it cannot come back
            raise ConflictError(str(exc)) from exc
        return Response(release_repr(release), status=status.HTTP_201_CREATED)


class AppRestartView(AppScopedView):
    """POST {"process"?}: a rolling, zero-drop restart of one process type (or all), queued; 202."""

    @extend_schema(request=S.Restart, responses={202: S.Restarting, 409: S.Error})
    def post(self, request, app: str):
        process = body(request).get("process")
        if process is not None and not isinstance(process, str):
            raise ValidationError({"process": "must be a process type such as web, or left out for all"})
        try:
            restart_request(app=self.app, process=process, actor=request.user, remote_addr=client_ip(request))
        except NothingLive as exc:
            raise ConflictError(str(exc)) from exc
        except ValueError as exc:
            raise ValidationError({"process": str(exc)}) from exc
        return Response(
            {"app": self.app.name, "process": process, "status": "restarting"},
            status=status.HTTP_202_ACCEPTED,
        )


class AppRunsView(AppScopedView):
    @extend_schema(
        request=S.RunCreate,
        responses={201: S.RunStarted, 409: S.Error},
        description="Start a one-off command in the live release's image and config; follow its output.",
    )
    def post(self, request, app: str):
        data = body(request)
        command, detach = data.get("command"), data.get("detach", False)
        if not isinstance(command, str) or not isinstance(detach, bool):
            raise ValidationError(
                {"command": "is required: the command line to run, e.g. python manage.py migrate"}
            )
        try:
            run = oneoff_start(
                app=self.app,
                command=command,
                detach=detach,
                actor=request.user,
                remote_addr=client_ip(request),
            )
        except ValueError as exc:
            raise ValidationError({"command": str(exc)}) from exc
        except DeployError as exc:
            raise ConflictError(str(exc)) from exc
        return Response(run, status=status.HTTP_201_CREATED)


class AppRunView(AppScopedView):
    @extend_schema(responses=S.Run)
    def get(self, request, app: str, run_id: str):
        try:
            return Response(oneoff_info(app=self.app, run_id=run_id))
        except SchedulerError as exc:
            raise NotFound(str(exc)) from exc


class AppRunOutputView(AppScopedView):
    @extend_schema(responses={(200, "text/plain"): S.RunOutput})
    def get(self, request, app: str, run_id: str):
        try:
            oneoff_info(app=self.app, run_id=run_id)  # 404 before a stream starts
        except SchedulerError as exc:
            raise NotFound(str(exc)) from exc
        lines = oneoff_output(app=self.app, run_id=run_id)
        return StreamingHttpResponse(
            streamed(request, ((line + "\n").encode() for line in lines)),
            content_type="text/plain; charset=utf-8",
        )
