"""The push webhook of an app that follows a git repository elsewhere (berth.builds.sources): POST
/hooks/git/<app>, signed with the app's secret; a push of the deploy branch is fetched and deployed by a worker."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from berth.apps.models import App
from berth.builds.sources import PAYLOAD_MAX_BYTES, push_event, signature_valid
from berth.gitserver.tasks import source_deploy_task


@csrf_exempt  # signed by the sender, not a browser form
@require_POST
def source_webhook(request: HttpRequest, app: str) -> JsonResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > PAYLOAD_MAX_BYTES:
        return JsonResponse({"detail": f"the payload must be at most {PAYLOAD_MAX_BYTES} bytes"}, status=413)
    target = App.objects.select_related("team").filter(name=app).exclude(source_url="").first()
    # an app that follows no repository answers as an unknown one: names of apps do not leak
    if target is None:
        return JsonResponse({"detail": "not found"}, status=404)
    body = request.body
    headers = {key.lower(): value for key, value in request.headers.items()}
    if not signature_valid(app=target, headers=headers, body=body):
        return JsonResponse({"detail": "the signature does not match this app's webhook secret"}, status=401)
    event = push_event(body)
    if event is None:
        return JsonResponse({"detail": "not a push of a branch: nothing to do"}, status=202)
    if event.ref != f"refs/heads/{target.deploy_branch}":
        return JsonResponse(
            {"detail": f"{event.ref} is not {target.name}'s deploy branch: nothing to do"}, status=202
        )
    source_deploy_task.delay(target.pk, event.sha)
    return JsonResponse(
        {"detail": f"{event.sha[:12]} will be fetched and deployed", "sha": event.sha}, status=202
    )
