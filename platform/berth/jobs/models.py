"""Scheduled jobs (`berth cron:add`): a command run on a cron schedule (UTC) as a one-off in the live release."""

from django.conf import settings
from django.db import models

from berth.apps.models import App


class CronJob(models.Model):
    """One schedule of one app. `next_run_at` is the next time it is due: the clock (berth.jobs.services.cron_tick)
    moves it forward with a conditional update, which is what makes one tick, and only one, start each run."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="cron_jobs")
    schedule = models.CharField(max_length=200)
    command = models.TextField()
    allow_overlap = models.BooleanField(default=False)
    # declared in the app's app.json (its `cron` section): each live release's manifest replaces these
    from_manifest = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["app_id", "pk"]

    def __str__(self) -> str:
        return f"{self.app.name} #{self.pk} {self.schedule} {self.command[:40]}"


class CronRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the previous run was still going and the job does not allow overlap


ACTIVE_RUN_STATUSES = [CronRunStatus.QUEUED, CronRunStatus.RUNNING]


class CronRun(models.Model):
    """One run of a job: when it was due, what it did. Its output lines are in the app's log as `scheduler.<id>`."""

    job = models.ForeignKey(CronJob, on_delete=models.CASCADE, related_name="runs")
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=CronRunStatus.choices, default=CronRunStatus.QUEUED)
    release = models.PositiveIntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["job", "status"])]

    def __str__(self) -> str:
        return f"run {self.pk} of job {self.job_id}: {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 1)
        return None
