"""GET /metrics: the platform's figures for Prometheus, behind a bearer token (`manage.py metrics_token`)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from berth.operations.exposition import exposition, token_matches


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    if not token_matches(given):
        response = JsonResponse(
            {"detail": "a metrics token is needed: Authorization: Bearer <manage.py metrics_token>"},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="berth-metrics"'
        return response
    return HttpResponse(exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")
