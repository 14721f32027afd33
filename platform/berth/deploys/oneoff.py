"""One-off runs (`berth run`): a command in a fresh container of the live release, its output streamed."""

import logging

from berth.apps.models import App, Formation
from berth.audit.services import audit_record
from berth.deploys.errors import DeployError
from berth.releases.models import Release, ReleaseStatus
from berth.runtime.oneoff import oneoff_follow, oneoff_status, run_oneoff

logger = logging.getLogger(__name__)


def _runnable_release(app: App) -> Release:
    live = Release.objects.filter(app=app, status=ReleaseStatus.LIVE).order_by("-version").first()
    if live is None or not live.image:
        raise DeployError(f"{app.name} has no live release to run a command in; deploy it first")
    return live


def oneoff_start(
    *, app: App, command: str, actor, detach: bool = False, remote_addr: str | None = None
) -> dict:
    """Start `command` in a container of the live release's image and config (`berth run`)."""
    command = (command or "").strip()
    if not command or len(command) > 8192 or "\x00" in command:
        raise ValueError("command must be 1-8192 characters")
    release = _runnable_release(app)
    memory = Formation.objects.filter(app=app, process="web").values_list("memory_mb", flat=True).first()
    result = run_oneoff(
        app=app.name,
        team=app.team.name,
        release=release.version,
        image=release.image,
        command=command,
        env=release.config,
        detach=True,  # the caller follows the output over HTTP; a dropped connection leaves the run alone
        memory_mb=memory,
        labels={"org.berth.detach": "1" if detach else "0"},
    )
    audit_record(
        action="run.start",
        actor=actor,
        team=app.team,
        target=f"{app.name} v{release.version}",
        remote_addr=remote_addr,
        data={"command": command[:200], "detach": detach},
    )
    return {
        "id": result.container_id[:12],
        "release": release.version,
        "command": command,
        "status": "running",
    }


def oneoff_output(*, app: App, run_id: str):
    return oneoff_follow(run_id, app=app.name)


def oneoff_info(*, app: App, run_id: str) -> dict:
    return oneoff_status(run_id, app=app.name)
