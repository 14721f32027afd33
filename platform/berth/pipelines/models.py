"""Pipelines, as Heroku's: a team's apps in stages (development → staging → production); a promotion deploys an
app's live image, unchanged, to the apps of the next stage."""

from django.db import models


class Stage(models.TextChoices):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


STAGE_ORDER = [Stage.DEVELOPMENT, Stage.STAGING, Stage.PRODUCTION]


class Pipeline(models.Model):
    """Named once, globally (like apps: the API addresses it by name); it belongs to one team."""

    name = models.CharField(max_length=30, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="pipelines")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PipelineApp(models.Model):
    """An app's place in a pipeline: one pipeline per app, one stage."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="couplings")
    app = models.OneToOneField("apps.App", on_delete=models.CASCADE, related_name="pipeline_coupling")
    stage = models.CharField(max_length=20, choices=Stage.choices)

    class Meta:
        ordering = ["pipeline", "stage", "app__name"]

    def __str__(self) -> str:
        return f"{self.app_id} in {self.pipeline_id} ({self.stage})"
