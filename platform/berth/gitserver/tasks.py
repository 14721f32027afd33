from celery import shared_task

from berth.apps.models import App
from berth.builds.sources import SourceError, source_build_active, source_deploy
from berth.deploys.events import app_event
from berth.gitserver.services import repo_ensure


@shared_task(name="berth.gitserver.source_deploy", bind=True, acks_late=True, max_retries=40)
def source_deploy_task(self, app_id: int, sha: str) -> str:
    """Fetch and deploy a commit a source's webhook announced; waits (retries) while another build of the app runs.
    Idempotent: a commit already built or building is not built again."""
    app = App.objects.select_related("team").filter(pk=app_id).first()
    if app is None:
        return "the app is gone"
    if source_build_active(app):
        raise self.retry(countdown=15)
    try:
        repo = repo_ensure(app_name=app.name, deploy_branch=app.deploy_branch)
        build = source_deploy(app=app, sha=sha, repo=repo)
    except SourceError as exc:
        app_event(app.name, "source.failed", f"{sha[:12]} from {app.source_url} not deployed: {exc}")
        return str(exc)
    if build is None:
        return f"{sha[:12]} was built already"
    app_event(app.name, "source.push", f"{sha[:12]} from {app.source_url}: build {build.pk} queued")
    return f"build {build.pk}"
