"""What deploys do when other domains change: run queued builds, roll out config releases, follow formation and
restarts, tear down apps. Each receiver only queues a task (berth.deploys.tasks)."""

from django.dispatch import receiver

from berth.apps.signals import app_destroyed, domains_changed, formation_changed
from berth.builds.signals import build_queued
from berth.deploys.signals import restart_requested
from berth.deploys.tasks import (
    app_restart_task,
    app_teardown_task,
    build_run_task,
    formation_apply_task,
    release_deploy_task,
)
from berth.releases.signals import release_created

PREVIEWS_QUEUE = "previews"  # the workers consume it beside default, builds, deploys (deploy/Procfile)


@receiver(build_queued)
def run_build(sender, build, **kwargs):
    # a preview app's build waits on a queue of its own: previews never hold up a production deploy
    build_run_task.apply_async((build.pk,), queue=PREVIEWS_QUEUE if build.app.parent_id else None)


@receiver(release_created)
def deploy_new_config_release(sender, release, **kwargs):
    # builds and rollbacks deploy their release themselves; a config change makes a `pending` one to roll out
    if release.status == "pending" and release.image:
        release_deploy_task.delay(release.pk)


@receiver(formation_changed)
def scale_live_release(sender, app, processes, **kwargs):
    formation_apply_task.delay(app.pk, list(processes))


@receiver(domains_changed)
def route_domains(sender, app, **kwargs):
    formation_apply_task.delay(app.pk, [])


@receiver(restart_requested)
def restart_processes(sender, app, process, **kwargs):
    app_restart_task.delay(app.pk, process)


@receiver(app_destroyed)
def tear_down(sender, name, **kwargs):
    app_teardown_task.delay(name)
