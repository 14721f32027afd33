import secrets

from django.conf import settings
from django.db import models

from berth.runtime.images import LOCAL_REPOSITORY


class BuildStatus(models.TextChoices):
    QUEUED = "queued"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_BUILD_STATUSES = (BuildStatus.QUEUED, BuildStatus.BUILDING)


def new_tag_token() -> str:
    """The random part of a build's image tag: a tag another team cannot guess (build ids are global)."""
    return secrets.token_hex(8)


def build_image_tag(*, app_name: str, token: str) -> str:
    """The local tag of a build's image (the image GC protects the tags of running builds by it)."""
    return f"{LOCAL_REPOSITORY}/{app_name}:build-{token}"


def build_cache_ref(*, app_name: str) -> str:
    """The local tag of the app's dependency cache (its last build's dependency stage, reused by its next build;
    the image GC keeps it, `builds:cache:clear` removes it). Under the app's own name: no other team may use it."""
    return f"{LOCAL_REPOSITORY}/{app_name}:build-cache"


def build_run_ref(*, app_name: str) -> str:
    """The local tag of the app's run cache (its last image up to its dependencies, which its next image starts
    FROM: buildpacks that mark one, e.g. Node.js); kept and removed as the dependency cache is."""
    return f"{LOCAL_REPOSITORY}/{app_name}:build-run"


class Build(models.Model):
    """One attempt to turn a pushed commit or an image reference into a release (and roll it out).

    Its status moves only through builds.services.build_transition (a conditional UPDATE). Log lines stream through
    a Redis stream while it runs and are kept in `log` when it ends.
    """

    class Source(models.TextChoices):
        GIT = "git"
        IMAGE = "image"

    app = models.ForeignKey("apps.App", on_delete=models.CASCADE, related_name="builds")
    source = models.CharField(max_length=10, choices=Source.choices)
    git_ref = models.CharField(max_length=255, blank=True, default="")
    git_sha = models.CharField(max_length=64, blank=True, default="")
    image_ref = models.CharField(
        max_length=512, blank=True, default="", help_text="requested image (image deploys)"
    )
    source_path = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="the exported tree (git pushes); removed when the build ends",
    )
    buildpack = models.CharField(max_length=50, blank=True, default="")
    image = models.CharField(max_length=512, blank=True, default="", help_text="what the release runs")
    status = models.CharField(max_length=20, choices=BuildStatus.choices, default=BuildStatus.QUEUED)
    status_reason = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    log = models.TextField(blank=True, default="")
    release = models.ForeignKey(
        "releases.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="builds"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid of the worker process running it"
    )
    tag_token = models.CharField(
        max_length=32,
        default=new_tag_token,
        editable=False,
        help_text="random part of the image's tag (build-<token>), so no team can guess another's tags",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="build_status_heartbeat_idx")]

    def __str__(self) -> str:
        return f"build {self.pk} of {self.app_id}"

    @property
    def stream_key(self) -> str:
        return f"berth:build:{self.pk}"

    @property
    def image_tag(self) -> str:
        return build_image_tag(app_name=self.app.name, token=self.tag_token)

    @property
    def registry_tag(self) -> str:
        """The tag of the build's image in Berth's registry (`<registry>/<app>:<this>`)."""
        return f"build-{self.tag_token}"

    @property
    def is_finished(self) -> bool:
        return self.status not in ACTIVE_BUILD_STATUSES
