"""What deploys do when other domains change: roll out config releases, follow formation, tear down apps."""

from django.dispatch import receiver

from berth.apps.signals import app_destroyed, domains_changed, formation_changed
from berth.releases.signals import release_created


@receiver(release_created)
def deploy_new_config_release(sender, release, **kwargs):
    # builds and rollbacks deploy their release themselves; a config change makes a `pending` one to roll out
    if release.status == "pending" and release.image:
        from berth.deploys.tasks import release_deploy_task

        release_deploy_task.delay(release.pk)


@receiver(formation_changed)
def scale_live_release(sender, app, processes, **kwargs):
    from berth.deploys.tasks import formation_apply_task

    formation_apply_task.delay(app.pk, list(processes))


@receiver(domains_changed)
def route_domains(sender, app, **kwargs):
    from berth.deploys.tasks import formation_apply_task

    formation_apply_task.delay(app.pk, [])


@receiver(app_destroyed)
def tear_down(sender, name, **kwargs):
    from berth.deploys.tasks import app_teardown_task

    app_teardown_task.delay(name)
