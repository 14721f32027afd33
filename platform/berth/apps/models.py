from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from berth.apps.crypto import decrypt_text


class App(models.Model):
    """An application a team deploys: named once, globally, served at http://<name>.<BERTH_APPS_DOMAIN>."""

    name = models.CharField(max_length=30, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="apps")
    deploy_branch = models.CharField(max_length=255, default="main")
    health_check_path = models.CharField(max_length=255, default="/")
    buildpack = models.CharField(max_length=50, blank=True, default="", help_text='"" detects the buildpack')
    # HTTPS (berth.certs): plain HTTP redirects to HTTPS for each hostname once a certificate serves it; HSTS opt-in
    https_redirect = models.BooleanField(default=True)
    hsts = models.BooleanField(default=False)
    # maintenance mode: the router answers every hostname with the page (Berth's own when empty), 503 + Retry-After
    maintenance = models.BooleanField(default=False)
    maintenance_page = models.TextField(blank=True, default="")
    # preview apps (berth.previews): a push of another branch than deploy_branch makes or updates the app
    # <name>--<branch>, whose parent this app is; keys in preview_exclude are not copied to previews
    previews = models.BooleanField(default=False)
    preview_exclude = models.JSONField(default=list, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="preview_apps"
    )
    preview_branch = models.CharField(max_length=255, blank=True, default="")
    # deploys from elsewhere (berth.builds.sources): a git repository the app follows, whose push webhook
    # (signed with this secret, encrypted like config vars) makes Berth fetch and deploy the pushed commit
    source_url = models.CharField(max_length=500, blank=True, default="")
    source_secret_encrypted = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def hostname(self) -> str:
        """The app's built-in hostname, <name>.<BERTH_APPS_DOMAIN>."""
        return app_hostname(self.name)

    @property
    def url(self) -> str:
        """Where the app answers at its built-in hostname (app_url)."""
        return app_url(self.name, serves_https=self.serves_https)

    @property
    def serves_https(self) -> bool:
        """Has the built-in hostname a certificate the router serves (issued or uploaded, not expired)?"""
        if self.pk is None:
            return False
        now = timezone.now()
        # berth.certs (a floor above) keeps the certificates: read through the reverse relation it declares, not an
        # import. Filtered here rather than in SQL: a list that prefetched `certificates` costs no query, and JSON
        # containment is not available on SQLite
        return any(
            certificate_serves(
                certificate.hostnames,
                self.hostname,
                serial=certificate.serial,
                not_after=certificate.not_after,
                now=now,
            )
            for certificate in self.certificates.all()
        )


def app_hostname(name: str) -> str:
    """An app's built-in hostname, <name>.<BERTH_APPS_DOMAIN>."""
    return f"{name}.{settings.BERTH_APPS_DOMAIN}".lower()


def app_url(name: str, *, serves_https: bool) -> str:
    """Where the app `name` answers at its built-in hostname: https://… once a certificate for that name is served
    and the router has an HTTPS port (BERTH_HTTPS_PORT), else http://…; the port shown unless it is the scheme's
    default. What the API, the CLI, the dashboard and the push output show. (A function of the name, so a list
    read as plain rows needs no App instances: berth.releases.selectors.app_summaries_visible.)"""
    https_port = settings.BERTH_HTTPS_PORT
    if https_port and serves_https:
        return f"https://{app_hostname(name)}{'' if https_port == 443 else f':{https_port}'}"
    port = settings.BERTH_HTTP_PORT
    suffix = "" if port == 80 else f":{port}"
    return f"http://{name}.{settings.BERTH_APPS_DOMAIN}{suffix}"


def certificate_serves(hostnames: list, hostname: str, *, serial: str, not_after, now) -> bool:
    """Does a certificate (its names, serial, expiry) serve `hostname` now: issued or uploaded, not expired?"""
    return bool(serial) and not_after is not None and not_after > now and hostname in hostnames


class ConfigVar(models.Model):
    """One environment variable of an app. The value is stored encrypted (Fernet); read it with `.value`."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="config_vars")
    key = models.CharField(max_length=255)
    value_encrypted = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "key"], name="configvar_app_key_unique")]
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.app}:{self.key}"

    @property
    def value(self) -> str:
        return decrypt_text(self.value_encrypted)


class Formation(models.Model):
    """How many containers of one process type an app runs, and their limits (null = no limit)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="formation")
    process = models.CharField(max_length=63)
    replicas = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(100)])
    memory_mb = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(32), MaxValueValidator(65536)]
    )
    cpu = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01), MaxValueValidator(64)],
    )
    # Swarm placement constraints on node labels, e.g. ["node.labels.zone==a"] (berth ps:place; berth.nodes)
    constraints = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "process"], name="formation_app_process_unique")
        ]
        ordering = ["process"]

    def __str__(self) -> str:
        return f"{self.app}:{self.process}={self.replicas}"


class Domain(models.Model):
    """A custom hostname routed to an app (besides its own <name>.<BERTH_APPS_DOMAIN>)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="domains")
    hostname = models.CharField(max_length=253, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname
