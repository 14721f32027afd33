"""berth.certs listens: an app's first live release or a new domain queues its issuance, a renewal asked for is
queued, and a certificate row deleted (removed, replaced, its domain or app gone) leaves the router after the
commit."""

import logging

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from berth.apps.signals import domains_changed
from berth.certs.acme_client import acme_enabled
from berth.certs.models import Certificate
from berth.certs.services import certificate_unserve
from berth.certs.signals import certificate_renew_requested
from berth.certs.tasks import certificate_attempt_task, certificates_app_task
from berth.deploys.signals import build_released

logger = logging.getLogger(__name__)


def _queue(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception:  # noqa: BLE001 - the sweep (every minute) does it anyway; a deploy is worth more
        logger.warning(
            "could not queue %s%r; the certificates sweep will do it", task.name, args, exc_info=True
        )


@receiver(build_released)
def issue_for_live_app(sender, app, **kwargs) -> None:
    if acme_enabled():
        _queue(certificates_app_task, app.pk)


@receiver(domains_changed)
def issue_for_domains(sender, app, hostname: str, added: bool, **kwargs) -> None:
    # removed: the domain's certificate goes; added: issued once the name points at us
    _queue(certificates_app_task, app.pk)


@receiver(certificate_renew_requested)
def renew_now(sender, certificate_id: int, **kwargs) -> None:
    _queue(certificate_attempt_task, certificate_id)


@receiver(post_delete, sender=Certificate)
def unserve_deleted(sender, instance: Certificate, **kwargs) -> None:
    router_name, hostnames, app_id = instance.router_name, list(instance.hostnames), instance.app_id
    transaction.on_commit(
        lambda: certificate_unserve(router_name=router_name, hostnames=hostnames, app_id=app_id)
    )
