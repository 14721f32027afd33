"""API v1 for an app's scheduled jobs (berth.jobs): list with the last run, add, show with recent runs, remove.
Times are UTC (ISO 8601 with Z); the schedule is a cron expression in UTC."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, body, client_ip, str_field
from berth.jobs import selectors as jobs_selectors
from berth.jobs import services as jobs_services
from berth.jobs.models import CronJob, CronRun


def run_repr(run: CronRun | None) -> dict | None:
    if run is None:
        return None
    return {
        "id": run.pk,
        "instance": jobs_services.run_instance(run),
        "status": run.status,
        "due_at": run.due_at,
        "release": run.release,
        "exit_code": run.exit_code,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_seconds": run.duration_seconds,
        "reason": run.reason,
    }


def job_repr(job: CronJob, last_run: CronRun | None) -> dict:
    return {
        "id": job.pk,
        "schedule": job.schedule,
        "timezone": "UTC",
        "command": job.command,
        "allow_overlap": job.allow_overlap,
        "next_run_at": job.next_run_at,
        "created_at": job.created_at,
        "last_run": run_repr(last_run),
    }


class CronViewMixin:
    def handle_exception(self, exc):
        if isinstance(exc, CronJob.DoesNotExist):
            exc = NotFound("no such scheduled job for this app")
        return super().handle_exception(exc)


class AppCronView(CronViewMixin, AppScopedView):
    @extend_schema(
        operation_id="apps_cron_list",
        responses=S.CronJobItem(many=True),
        description="The app's scheduled jobs and each one's last run.",
    )
    def get(self, request, app: str):
        return Response(
            [job_repr(job, run) for job, run in jobs_selectors.cron_jobs_with_last_runs(self.app)]
        )

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        description='{"schedule": "*/15 * * * *" (cron, UTC), "command": "...", "allow_overlap": false}: the '
        "command runs as a one-off in the live release; 400 names a wrong field.",
    )
    def post(self, request, app: str):
        data = body(request)
        allow_overlap = data.get("allow_overlap", False)
        if not isinstance(allow_overlap, bool):
            raise ValidationError({"allow_overlap": "must be true or false"})
        job = jobs_services.cron_job_add(
            app=self.app,
            schedule=str_field(data, "schedule"),
            command=str_field(data, "command"),
            allow_overlap=allow_overlap,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(job_repr(job, None), status=201)


class AppCronJobView(CronViewMixin, AppScopedView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, description="One job and its latest runs (skipped ones too)."
    )
    def get(self, request, app: str, job_id: int):
        job = jobs_selectors.cron_jobs_for_app(self.app).get(pk=job_id)
        runs = jobs_selectors.cron_runs_for_job(job)
        return Response(
            job_repr(job, jobs_selectors.cron_last_run(job)) | {"runs": [run_repr(r) for r in runs]}
        )

    @extend_schema(responses={204: None})
    def delete(self, request, app: str, job_id: int):
        jobs_services.cron_job_remove(
            app=self.app, job_id=job_id, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=204)
