"""Reads of certificates: what the API, the CLI and the dashboard show."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from berth.apps.models import App
from berth.certs.models import Certificate


def certificates_for_app(app: App) -> QuerySet[Certificate]:
    """The app's certificates, oldest first."""
    return Certificate.objects.filter(app=app).order_by("id")


def apps_with_certificates(apps: QuerySet[App]) -> QuerySet[App]:
    """`apps` with the fields of their certificates that App.url reads (names, serial, expiry) prefetched: a list of
    apps costs one query for them, not one per app."""
    served = Certificate.objects.only("app_id", "hostnames", "serial", "not_after")
    return apps.prefetch_related(Prefetch("certificates", queryset=served))


def certificates_expiring(days: int | None = None) -> QuerySet[Certificate]:
    """Certificates that expire within `days` (default BERTH_CERT_RENEW_DAYS_ALARM), soonest first: the dashboard's
    banner. A healthy ACME certificate is renewed long before (two thirds into its life), so each one listed is a
    renewal that keeps failing (`state` "failing", `reason` says why) or an uploaded one nobody replaced."""
    window = timedelta(days=settings.BERTH_CERT_RENEW_DAYS_ALARM if days is None else days)
    return (
        Certificate.objects.filter(not_after__isnull=False, not_after__lt=timezone.now() + window)
        .select_related("app")
        .order_by("not_after", "id")
    )
