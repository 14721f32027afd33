from django.conf import settings
from django.db import models

from berth.apps.crypto import decrypt_json


class ReleaseStatus(models.TextChoices):
    PENDING = "pending"
    BUILT = "built"
    DEPLOYING = "deploying"
    LIVE = "live"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"


class ImmutableRelease(Exception):
    pass


class Release(models.Model):
    """An immutable (image, config, procfile) triple of an app, numbered v1, v2…; deploys run releases.

    Rows are never updated except their status fields, through releases.services.release_set_status, and
    image_pruned_at, through releases.services.releases_mark_image_pruned.
    """

    app = models.ForeignKey("apps.App", on_delete=models.CASCADE, related_name="releases")
    version = models.PositiveIntegerField()
    image = models.CharField(max_length=512, blank=True, default="")
    config_encrypted = models.TextField(blank=True, default="")
    procfile = models.JSONField(default=dict, blank=True)
    # app.json's startup checks of its build ({"web": [{"path": "/ready", "attempts": 5, …}]}, berth.builds.manifest),
    # run before the cut-over instead of the app's default check; a config change or a rollback carries them on
    healthchecks = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=20, choices=ReleaseStatus.choices, default=ReleaseStatus.PENDING)
    status_reason = models.TextField(blank=True, default="")
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # when the image was deleted from the registry and the nodes (kept: the last N releases and the live one);
    # such a release cannot be rolled back to
    image_pruned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "version"], name="release_app_version_unique")]
        ordering = ["app", "-version"]
        indexes = [models.Index(fields=["app", "status", "-version"], name="release_app_status_idx")]

    def __str__(self) -> str:
        return f"{self.app_id} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRelease("releases are immutable; change status with release_set_status")
        super().save(*args, **kwargs)

    @property
    def config(self) -> dict[str, str]:
        """The config vars as they were when this release was made (decrypted)."""
        return decrypt_json(self.config_encrypted)

    @property
    def config_keys(self) -> list[str]:
        return sorted(self.config)
