"""Reads of certificates: what the API, the CLI and the dashboard show."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from berth.apps.models import App, app_hostname, certificate_serves
from berth.certs.models import Certificate, CertificateSource, CertificateState
from berth.core.queries import compiled_rows
from berth.releases.selectors import app_summaries_visible


def certificates_for_app(app: App) -> QuerySet[Certificate]:
    """The app's certificates, oldest first."""
    return Certificate.objects.filter(app=app).order_by("id")


def with_certified(apps: QuerySet) -> QuerySet:
    """`apps` (App rows or instances) annotated with `certified`: has the app a certificate in force (issued or
    uploaded, not expired), for whichever of its names. A list asks apps_serving_https only about those."""
    # the database's clock, not a parameter: the SQL stays the same from one request to the next (compiled_rows)
    in_force = Certificate.objects.filter(app=OuterRef("pk"), not_after__gt=Now()).exclude(serial="")
    return apps.annotate(certified=Exists(in_force))


def app_summaries_page(*, user, search: str = "", after: str = "", limit: int | None = None) -> list[dict]:
    """The API's list: the rows of the apps of the user's teams (app_summaries_visible) with `certified`, the
    first `limit` of them (all: None).

    Without a search its SQL is compiled once per shape (a superuser or a member, after a name or from the
    start, the page size) and run with the user's id and `after` as its parameters (berth.core.queries)."""
    if not user.is_authenticated:
        return []
    user_id = None if user.is_superuser else user.pk  # None: every app
    if search:  # a search is a LIKE pattern Django escapes: this list is compiled for each
        summaries = with_certified(app_summaries_visible(user_id=user_id, search=search, after=after))
        return list(summaries if limit is None else summaries[:limit])
    values: dict[str, int | str] = {}
    if user_id is not None:
        values["user_id"] = user_id
    if after:
        values["after"] = after

    def build(user_id: int | None = None, after: str = "") -> QuerySet:
        summaries = with_certified(app_summaries_visible(user_id=user_id, after=after))
        return summaries if limit is None else summaries[:limit]

    return compiled_rows(("app_summaries_page", user_id is None, bool(after), limit), build, **values)


def apps_serving_https(rows: list[dict]) -> set[int]:
    """Of a list's rows (id, name, certified: with_certified), the ids of the apps whose built-in hostname a
    certificate serves: App.serves_https without App or Certificate instances, one query when any is certified."""
    names = {row["id"]: row["name"] for row in rows if row["certified"]}
    if not names:
        return set()
    now = timezone.now()
    served = (
        Certificate.objects.filter(app_id__in=names, not_after__gt=now)
        .exclude(serial="")
        .values_list("app_id", "hostnames", "serial", "not_after")
    )
    return {
        app_id
        for app_id, hostnames, serial, not_after in served
        if certificate_serves(
            hostnames, app_hostname(names[app_id]), serial=serial, not_after=not_after, now=now
        )
    }


def certificates_expiring(days: int | None = None) -> QuerySet[Certificate]:
    """Certificates that expire within `days` (default BERTH_CERT_RENEW_DAYS_ALARM), soonest first: the alarms
    (certificates_in_alarm, the dashboard's banner; the uploaded ones' daily alarm event). A healthy ACME certificate
    is renewed long before (two thirds into its life), so each one listed is a renewal that keeps failing (`state`
    "failing", `reason` says why) or an uploaded one nobody replaced."""
    window = timedelta(days=settings.BERTH_CERT_RENEW_DAYS_ALARM if days is None else days)
    # the database's clock: for given `days` the SQL stays the same from one call to the next (compiled_rows)
    return (
        Certificate.objects.filter(not_after__isnull=False, not_after__lt=Now() + window)
        .select_related("app")
        .order_by("not_after", "id")
    )


def certificates_in_alarm(days: int | None = None) -> QuerySet[Certificate]:
    """Of certificates_expiring, those that will not renew by themselves: the renewal is failing, or it was
    uploaded (Berth cannot renew it). The dashboard's banner lists them."""
    return certificates_expiring(days).filter(
        Q(state=CertificateState.FAILING) | Q(source=CertificateSource.UPLOADED)
    )
