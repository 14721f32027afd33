"""Celery adapters for the pipeline and deploys: they take ids, look the row up, and call a service.

Queues by task name (settings.CELERY_TASK_ROUTES); the names are kept as they were when each task was first
released, so tasks queued by an older Berth still run after an upgrade.
"""

from celery import shared_task
from django.conf import settings

from berth.apps.models import App
from berth.deploys.errors import DeployError
from berth.deploys.events import app_event
from berth.deploys.formation import app_restart, formation_apply
from berth.deploys.pipeline import build_run
from berth.deploys.rollout import app_teardown, release_deploy
from berth.releases.models import Release


@shared_task(
    name="berth.builds.run",
    acks_late=True,
    time_limit=settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 120,
    soft_time_limit=settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 60,
)
def build_run_task(build_id: int) -> None:
    build_run(build_id)


@shared_task(
    name="berth.deploys.deploy",
    acks_late=True,
    time_limit=settings.BERTH_DEPLOY_TIMEOUT + 60,
    soft_time_limit=settings.BERTH_DEPLOY_TIMEOUT + 30,
)
def release_deploy_task(release_id: int) -> None:
    release = Release.objects.select_related("app", "app__team").filter(pk=release_id).first()
    if release is None:
        return
    try:
        release_deploy(release=release)
    except DeployError:
        pass  # recorded on the release; nothing to retry


# a scale waits for a roll-out of the same app to finish (the app lock), then may roll web to a new generation
@shared_task(
    name="berth.deploys.formation",
    acks_late=True,
    time_limit=2 * settings.BERTH_DEPLOY_TIMEOUT + 60,
    soft_time_limit=2 * settings.BERTH_DEPLOY_TIMEOUT + 30,
)
def formation_apply_task(app_id: int, processes: list[str]) -> None:
    app = App.objects.select_related("team").filter(pk=app_id).first()
    if app is None:
        return
    try:
        formation_apply(app=app, processes=processes)
    except DeployError as exc:
        # the running processes were left alone; the app's events say why the new ones did not start
        app_event(app.name, "scale.failed", str(exc).splitlines()[0])


@shared_task(name="berth.deploys.teardown", acks_late=True, time_limit=300, soft_time_limit=270)
def app_teardown_task(name: str) -> None:
    app_teardown(name=name)


@shared_task(
    name="berth.deploys.restart",
    acks_late=True,
    time_limit=settings.BERTH_DEPLOY_TIMEOUT + 60,
    soft_time_limit=settings.BERTH_DEPLOY_TIMEOUT + 30,
)
def app_restart_task(app_id: int, process: str | None = None) -> None:
    app = App.objects.select_related("team").filter(pk=app_id).first()
    if app is None:
        return
    try:
        app_restart(app=app, process=process)
    except (DeployError, ValueError):
        pass  # recorded as the app's restart.failed event; the old processes keep running
