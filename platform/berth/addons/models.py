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
