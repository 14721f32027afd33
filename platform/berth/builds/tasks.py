from celery import shared_task
from django.conf import settings


@shared_task(
    name="berth.builds.run",
    acks_late=True,
    time_limit=settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 120,
    soft_time_limit=settings.BERTH_BUILD_TIMEOUT + settings.BERTH_DEPLOY_TIMEOUT + 60,
)
def build_run_task(build_id: int) -> None:
    from berth.builds.services import build_run

    build_run(build_id)
