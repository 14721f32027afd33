"""Reads the dashboard pages combine from several domains (the domains' own selectors do the real work)."""

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery

from berth.accounts.models import ApiToken
from berth.apps.models import App
from berth.builds.models import Build
from berth.certs.selectors import certificates_in_alarm, with_certified
from berth.core.queries import compiled_rows, has_compiled
from berth.releases.models import Release
from berth.releases.selectors import apps_for_team


def apps_with_status(*, apps: QuerySet[App]) -> QuerySet[App]:
    """`apps` annotated with the current release's status and the newest build's id and status (one query)."""
    releases = Release.objects.filter(app=OuterRef("pk"))
    live = releases.filter(status="live").order_by("-version").values("status")[:1]
    newest_release = releases.order_by("-version").values("status")[:1]
    builds = Build.objects.filter(app=OuterRef("pk")).order_by("-id")
    return apps.annotate(
        live_status=Subquery(live),
        newest_release_status=Subquery(newest_release),
        build_id=Subquery(builds.values("id")[:1]),
        build_status=Subquery(builds.values("status")[:1]),
    )


# no created_at: neither the page nor its poll shows it, and reading it was a twelfth of the page's CPU (py-spy of a
# web worker, 500 apps: a timestamp parsed for each row)
STATUS_FIELDS = (
    "id",
    "name",
    "current_version",
    "live_status",
    "newest_release_status",
    "build_id",
    "build_status",
    "certified",
)


class AppStatusRows:
    """The apps list of a team for a Paginator: how many apps (whose name contains `search`), a page of their rows
    (apps_with_status's, with `certified`) as dicts, and whether a certificate of the team's apps is in alarm (the
    banner's list, berth.dashboard.certificates, is read only then).

    The page the request asks for (`page`, 1 first) is read with the count and the alarm, in one statement (both
    subqueries of no row, computed once): three statements a page were one (py-spy of a web worker at 500 apps:
    the count and the alarm were a seventh of the page's CPU). Without a search its SQL is compiled once per page
    window and run with the team's id (the API's list does the same, berth.core.queries: building and compiling
    this one, with its subqueries, was most of the page's query time)."""

    def __init__(self, *, team_id: int, page_size: int, search: str = "", page: int = 1) -> None:
        self.team_id, self.page_size, self.search = team_id, page_size, search
        self.asked = (max(page, 1) - 1) * page_size  # where the asked page starts
        self.alarm: bool | None = None  # unknown until a page with rows was read
        self._total: int | None = None
        self._pages: dict[int, list[dict]] = {}

    def count(self) -> int:
        # the page asked for, if its SQL is compiled already (or it is the first): a page number that may not
        # exist is not worth a shape of its own (the Paginator reads the page it chooses after the count)
        first = self.asked if self.search or has_compiled(self._shape(self.asked)) else 0
        if self._page(first):
            return int(self._total or 0)
        # past the last page, or none found: the count alone (a team without apps has no certificate in alarm;
        # the alarm of a search that found nothing is the team's, unknown here)
        if self.search:
            return self._searched(App.objects.filter(team_id=self.team_id)).count()
        total = App.objects.filter(team_id=self.team_id).count()
        if total == 0:
            self.alarm = False
        return total

    def __getitem__(self, window: slice) -> list[dict]:
        # a whole page from where the window starts (a last page ends where the count does: the same SQL)
        start = window.start or 0
        rows = self._page(start)
        return rows[: window.stop - start] if window.stop is not None else rows

    def _searched(self, apps: QuerySet[App]) -> QuerySet[App]:
        return apps.filter(name__icontains=self.search) if self.search else apps

    def _shape(self, start: int) -> tuple:
        return ("dashboard-apps", start, self.page_size, settings.BERTH_CERT_RENEW_DAYS_ALARM)

    def _page(self, start: int) -> list[dict]:
        if start in self._pages:
            return self._pages[start]
        days = settings.BERTH_CERT_RENEW_DAYS_ALARM

        def build(team_id: int) -> QuerySet:
            counted = (
                self._searched(App.objects.filter(team_id=team_id))
                .order_by()
                .values("team_id")
                .annotate(apps=Count("pk"))
                .values("apps")
            )
            alarm = certificates_in_alarm(days).filter(app__team_id=team_id)
            return (
                with_certified(apps_with_status(apps=self._searched(apps_for_team(team_id=team_id))))
                .annotate(team_apps=Subquery(counted), team_alarm=Exists(alarm))
                .values(*STATUS_FIELDS, "team_apps", "team_alarm")[start : start + self.page_size]
            )

        if self.search:  # a LIKE pattern Django escapes: compiled for each search
            rows = list(build(self.team_id))
        else:
            rows = compiled_rows(self._shape(start), build, team_id=self.team_id)
        for row in rows:
            self._total, self.alarm = row.pop("team_apps"), bool(row.pop("team_alarm"))
        self._pages[start] = rows
        return rows


def app_state(row: dict) -> str:
    """One word for the apps list, from an app's row of apps_with_status: building, deploying, live, failed, ... or
    "new" before any release."""
    if row.get("build_status") in ("queued", "building"):
        return "building"
    if row.get("newest_release_status") == "deploying":
        return "deploying"
    if row.get("live_status") == "live":
        return "live"
    return row.get("newest_release_status") or "new"


def builds_for_app(*, app: App, limit: int = 10) -> QuerySet[Build]:
    return Build.objects.filter(app=app).select_related("created_by", "release").order_by("-id")[:limit]


def build_for_app(*, app: App, build_id: int) -> Build | None:
    return Build.objects.select_related("app", "release", "created_by").filter(app=app, pk=build_id).first()


def tokens_for_user(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at=None).order_by("-created_at")
