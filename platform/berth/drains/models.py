"""Log drains: where an app's log lines (its output, router access lines, platform events) are forwarded."""

from django.conf import settings
from django.db import models

from berth.apps.models import App


class Drain(models.Model):
    """One destination of an app's log lines: syslog over TCP (`syslog://`), over TLS (`syslog+tls://`), or batched
    HTTPS POSTs (`https://`). The app's capped Redis log stream is the buffer: `cursor` is the id of the last
    entry delivered, and `added_at_cursor` how many entries the stream had ever been given up to it (Redis'
    entries-added), so lines the stream's cap trimmed before they were delivered are counted in `dropped`."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="drains")
    url = models.CharField(max_length=2000)
    token = models.CharField(max_length=40, unique=True)  # "d.<uuid>": names the drain to its receiver
    cursor = models.CharField(max_length=40, default="0-0")
    added_at_cursor = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    dropped = models.BigIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["app_id", "pk"]
        constraints = [models.UniqueConstraint(fields=["app", "url"], name="drains_one_url_per_app")]

    def __str__(self) -> str:
        return f"{self.app.name} drain #{self.pk} {self.url[:60]}"
