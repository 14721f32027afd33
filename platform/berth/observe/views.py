from django.http import HttpRequest, JsonResponse

from berth.observe.health import check_health


def healthz(request: HttpRequest) -> JsonResponse:
    """/healthz: each dependency's check, "ok" or the error; 503 when one fails (`manage.py doctor` prints the same)."""
    checks = check_health()
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
