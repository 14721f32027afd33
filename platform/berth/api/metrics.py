"""API v1 for an app's metrics history (kept on the server by berth.observe.history): what the dashboard's charts
load when the page opens, and poll with `since` to follow live."""

import time

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from berth.api.common import AppScopedView
from berth.observe.history import RANGES, history_read


class AppMetricsView(AppScopedView):
    @extend_schema(
        parameters=[
            OpenApiParameter("range", str, enum=sorted(RANGES), description="how far back (default 1h)"),
            OpenApiParameter(
                "since", float, description="only windows after this unix time (following live)"
            ),
        ],
        responses={200: dict},
    )
    def get(self, request, app: str):
        name = request.query_params.get("range", "1h")
        if name not in RANGES:
            raise ValidationError(
                {"detail": f"range must be one of {', '.join(sorted(RANGES))}, not {name!r}"}
            )
        since = request.query_params.get("since")
        try:
            since_ts = float(since) if since else None
        except ValueError:
            raise ValidationError(
                {"detail": f"since must be a unix time in seconds, not {since!r}"}
            ) from None
        return Response(
            history_read(app=self.app.name, seconds=RANGES[name], now=time.time(), since=since_ts)
        )
