from django.http import JsonResponse

from berth.core.health import check_health


def healthz(request):
    checks = check_health()
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
