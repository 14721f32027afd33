from django.db import models

KIND_POSTGRES = "postgres"
KIND_REDIS = "redis"
KINDS = (KIND_POSTGRES, KIND_REDIS)
# the config var an attachment sets when it is given no name
DEFAULT_VARS = {KIND_POSTGRES: "DATABASE_URL", KIND_REDIS: "REDIS_URL"}
# plan -> memory limit of the server (MB)
PLANS = {"small": 256, "medium": 1024}


class Addon(models.Model):
    """A database server (PostgreSQL or Redis) a team runs beside its apps: one Swarm service of its own with its
    data in a named volume on one node, reachable on the team's network only. Apps use it through attachments
    (a config var holding its URL). Its password is encrypted like config vars. Backups hang on this row."""

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="addons")
    name = models.CharField(max_length=30)
    kind = models.CharField(max_length=20, choices=[(k, k) for k in KINDS])
    plan = models.CharField(max_length=20, default="small")
    password_encrypted = models.TextField()
    node = models.CharField(max_length=100, blank=True, default="", help_text="Swarm node id it is pinned to")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="addon_unique_name_per_team")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name} ({self.kind})"


class AddonAttachment(models.Model):
    """An app using an add-on: the app's config var `config_var` holds the add-on's URL."""

    addon = models.ForeignKey(Addon, on_delete=models.CASCADE, related_name="attachments")
    app = models.ForeignKey("apps.App", on_delete=models.CASCADE, related_name="addon_attachments")
    config_var = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["addon", "app"], name="addon_attached_once_per_app"),
            models.UniqueConstraint(fields=["app", "config_var"], name="addon_var_unique_per_app"),
        ]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.app.name}: {self.config_var}"


class BackupState(models.TextChoices):
    CAPTURING = "capturing"
    CAPTURED = "captured"  # in the store with its checksum, not yet proven by a restore
    FAILED = "failed"  # the capture failed: nothing usable in the store
    VERIFIED = "verified"  # restored into a throwaway server, and it held what the add-on held at capture
    VERIFY_FAILED = "verify_failed"  # the alarm: the backup does not restore, or not to what was captured


class AddonBackup(models.Model):
    """One backup of an add-on: a pg_dump -Fc (PostgreSQL) or an RDB (Redis) in the backup store, its size and
    sha256, and the rows per table (keys per db) counted with it, which its verification compares. It outlives its
    add-on (addon becomes NULL; team, addon_name and kind stay), so a destroyed add-on's final backup remains."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="addon_backups")
    addon = models.ForeignKey(Addon, on_delete=models.SET_NULL, null=True, related_name="backups")
    addon_name = models.CharField(max_length=30)
    kind = models.CharField(max_length=20, choices=[(k, k) for k in KINDS])
    name = models.CharField(max_length=20, help_text="b001, b002… per add-on name in its team")
    state = models.CharField(max_length=20, choices=BackupState.choices, default=BackupState.CAPTURING)
    trigger = models.CharField(max_length=20, default="manual", help_text="manual, scheduled or final")
    store_key = models.CharField(max_length=300, blank=True, default="")
    size = models.BigIntegerField(null=True)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    counts = models.JSONField(default=dict, help_text="rows per table / keys per db at capture")
    verify_counts = models.JSONField(default=dict, help_text="what the throwaway restore held")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)
    verified_at = models.DateTimeField(null=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "addon_name", "name"], name="addon_backup_unique_name")
        ]
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.addon_name}/{self.name} ({self.state})"


class AddonBackupSchedule(models.Model):
    """A daily backup of an add-on at `at` (UTC), verified by a restore; the newest `keep` scheduled backups stay."""

    addon = models.OneToOneField(Addon, on_delete=models.CASCADE, related_name="backup_schedule")
    at = models.TimeField(help_text="UTC")
    keep = models.PositiveSmallIntegerField(default=7)
    last_run_on = models.DateField(null=True, help_text="the UTC day of the last scheduled capture")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.addon.name} at {self.at:%H:%M} UTC, keep {self.keep}"
