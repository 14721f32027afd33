"""Celery adapters for deploys: they take ids, look the row up, and call a service. Queue: deploys (task_routes)."""

from celery import shared_task
from django.conf import settings


@shared_task(
    name="berth.deploys.deploy",
    acks_late=True,
    time_limit=settings.BERTH_DEPLOY_TIMEOUT + 60,
    soft_time_limit=settings.BERTH_DEPLOY_TIMEOUT + 30,
)
def release_deploy_task(release_id: int) -> None:
    from berth.deploys.services import DeployError, release_deploy
    from berth.releases.models import Release

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
    from berth.apps.models import App
    from berth.deploys.services import DeployError, app_event, formation_apply

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
    from berth.deploys.services import app_teardown

    app_teardown(name=name)


@shared_task(
    name="berth.deploys.restart",
    acks_late=True,
    time_limit=settings.BERTH_DEPLOY_TIMEOUT + 60,
    soft_time_limit=settings.BERTH_DEPLOY_TIMEOUT + 30,
)
def app_restart_task(app_id: int, process: str | None = None) -> None:
    from berth.apps.models import App
    from berth.deploys.services import DeployError, app_restart

    app = App.objects.select_related("team").filter(pk=app_id).first()
    if app is None:
        return
    try:
        app_restart(app=app, process=process)
    except (DeployError, ValueError):
        pass  # recorded as the app's restart.failed event; the old processes keep running
