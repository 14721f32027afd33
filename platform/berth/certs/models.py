"""Certificates Berth serves for apps' hostnames (issued by an ACME CA or uploaded), and the installation's one ACME
account. Private keys are stored encrypted like config vars (berth.apps.crypto)."""

from django.db import models

from berth.apps.crypto import decrypt_text


class CertificateSource(models.TextChoices):
    ACME = "acme"
    UPLOADED = "uploaded"


class CertificateState(models.TextChoices):
    PENDING = "pending"  # not issued yet (waiting for its first attempt, or for the name to point at us)
    ISSUED = "issued"  # served; renewed when renew_at passes
    FAILING = "failing"  # the last attempt failed (`reason`); retried at next_attempt_at, a served one keeps serving


class Certificate(models.Model):
    """A certificate (and its key) for one or more hostnames of an app, served by the router under `router_name`.

    ACME certificates cover one hostname each (the built-in one, or one custom domain) and are issued and renewed
    by berth.certs.services; uploaded ones cover the app's hostnames their names match and are replaced by upload.
    """

    app = models.ForeignKey("apps.App", on_delete=models.CASCADE, related_name="certificates")
    hostnames = models.JSONField(default=list)
    source = models.CharField(max_length=10, choices=CertificateSource.choices)
    state = models.CharField(
        max_length=10, choices=CertificateState.choices, default=CertificateState.PENDING
    )
    reason = models.TextField(blank=True, default="")  # the CA's or Berth's last error; "" when fine
    serial = models.CharField(max_length=64, blank=True, default="")  # upper-case hex (router.serial_hex)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    # when to renew: the CA's ARI window when it offers one, else two thirds into the lifetime
    renew_at = models.DateTimeField(null=True, blank=True)
    key_encrypted = models.TextField(blank=True, default="")
    chain_pem = models.TextField(blank=True, default="")  # leaf first, then the intermediates
    failures = models.PositiveIntegerField(default=0)  # consecutive failed attempts (the backoff's exponent)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # null: as soon as the sweep gets to it
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app", "id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"]), models.Index(fields=["renew_at"])]

    def __str__(self) -> str:
        return f"{self.router_name} {','.join(self.hostnames)} ({self.state})"

    @property
    def router_name(self) -> str:
        """The stable name the router serves it under (a file stem on the router's disk)."""
        return f"c-{self.pk}"

    @property
    def private_key_pem(self) -> str:
        return decrypt_text(self.key_encrypted) if self.key_encrypted else ""

    @property
    def bundle_pem(self) -> str:
        """Key, leaf and chain in one PEM text: what the router is given."""
        return self.private_key_pem.rstrip("\n") + "\n" + self.chain_pem.lstrip("\n")


class AcmeAccount(models.Model):
    """The installation's account at an ACME directory: registered once with BERTH_ACME_EMAIL, key encrypted.

    One row per directory URL, so pointing BERTH_ACME_DIRECTORY at another CA registers there once too.
    """

    directory = models.CharField(max_length=500, unique=True)
    key_encrypted = models.TextField()  # the account's JWK (JSON), encrypted
    uri = models.CharField(max_length=500, blank=True, default="")  # the account URL ("" until registered)
    email = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.uri or self.directory
