"""What an operator of Berth checks beyond "is it up" (`manage.py doctor`): disk space for images and builds,
certificates near expiry whose renewal fails, add-on and control-plane backups that failed or stopped, the private
registry not answering, nodes that are not ready. Each finding carries its fix in one line.

These read the floors below (certs, addons, nodes, controlplane), which berth.observe, where the up-or-down checks
live, may not: hence a place of their own above them.
"""

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from berth.addons.backups import backup_alarm, backup_schedule_of, backups_of
from berth.addons.models import Addon, BackupState
from berth.certs.models import Certificate, CertificateSource, CertificateState
from berth.controlplane import services as controlplane
from berth.nodes.selectors import node_list
from berth.runtime.registry import registry_enabled, registry_ping
from berth.runtime.stats import engine_data_root

ERROR = "error"
WARNING = "warning"
CERT_ALARM_DAYS = 14
DISK_WARN_FRACTION = 0.10
DISK_WARN_BYTES = 5 * 1024**3
DISK_ERROR_FRACTION = 0.02
BACKUP_MAX_AGE = timedelta(days=2)  # a daily schedule missed twice


@dataclass(frozen=True)
class Finding:
    check: str  # the first word of doctor's line
    severity: str  # ERROR fails doctor; WARNING is said
    message: str
    fix: str


def disk_findings() -> list[Finding]:
    """Free space where images and builds go (the engine's data root) and where Berth keeps its state."""
    places = {"BERTH_HOME": Path(settings.BERTH_HOME)}
    try:
        places["Docker's data root"] = Path(engine_data_root())
    except Exception:  # noqa: BLE001 - the docker check above already says the engine is unreachable
        pass
    findings = []
    for what, path in places.items():
        try:
            stat = os.statvfs(path)
        except OSError:
            continue  # not on this machine (a remote engine): nothing to measure here
        free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
        fraction = free / total if total else 1.0
        if fraction < DISK_ERROR_FRACTION or (fraction < DISK_WARN_FRACTION and free < DISK_WARN_BYTES):
            findings.append(
                Finding(
                    "disk",
                    ERROR if fraction < DISK_ERROR_FRACTION else WARNING,
                    f"{what} ({path}): {free / 1024**3:.1f} GB free of {total / 1024**3:.0f} GB ({fraction:.0%})",
                    "free space: `docker image prune` removes images no container uses; or grow the disk",
                )
            )
    return findings


def certificate_findings(now=None) -> list[Finding]:
    """Certificates that expire within CERT_ALARM_DAYS and will not be renewed in time by themselves: an ACME one
    whose renewal keeps failing, or an uploaded one (Berth cannot renew those)."""
    now = now or timezone.now()
    soon = Certificate.objects.select_related("app").filter(
        not_after__isnull=False, not_after__lt=now + timedelta(days=CERT_ALARM_DAYS)
    )
    findings = []
    for cert in soon:
        days = (cert.not_after - now).total_seconds() / 86400
        when = f"expired {-days:.0f} days ago" if days < 0 else f"expires in {days:.0f} days"
        names = ", ".join(cert.hostnames)
        if cert.source == CertificateSource.UPLOADED:
            findings.append(
                Finding(
                    "certs",
                    ERROR,
                    f"{cert.app.name}: the uploaded certificate for {names} {when}",
                    f"upload its renewal: `berth certs:add CERT KEY -a {cert.app.name}`",
                )
            )
        elif cert.state == CertificateState.FAILING:
            findings.append(
                Finding(
                    "certs",
                    ERROR,
                    f"{cert.app.name}: the certificate for {names} {when} and its renewal fails: "
                    f"{(cert.reason or 'no reason recorded').splitlines()[0]}",
                    f"`berth certs -a {cert.app.name}` shows the CA's reason; the name must resolve to this router",
                )
            )
    return findings


def addon_backup_findings(now=None) -> list[Finding]:
    """Add-ons whose newest backup failed its capture or its verification, and scheduled ones with no verified
    backup for BACKUP_MAX_AGE."""
    now = now or timezone.now()
    findings = []
    for addon in Addon.objects.select_related("team"):
        where = f"{addon.team.name}/{addon.name}"
        capture = "pg:backups:capture" if addon.kind == "postgres" else "redis:backups:capture"
        alarm = backup_alarm(addon)
        if alarm:
            findings.append(
                Finding(
                    "backups",
                    ERROR,
                    f"add-on {where}: {alarm}",
                    f"`berth {capture.split(':')[0]}:backups -a APP` shows it; take one now: `berth {capture} -a APP`",
                )
            )
            continue
        if backup_schedule_of(addon) is None:
            continue
        newest = backups_of(addon).filter(state=BackupState.VERIFIED).order_by("-started_at").first()
        if newest is None or now - newest.started_at > BACKUP_MAX_AGE:
            age = "none yet" if newest is None else f"the newest is {(now - newest.started_at).days} days old"
            findings.append(
                Finding(
                    "backups",
                    ERROR,
                    f"add-on {where}: no verified backup for {BACKUP_MAX_AGE.days} days ({age})",
                    "scheduled backups run from Celery beat: check that `berth-daemons` (beat runs there) and a worker run",
                )
            )
    alarm = controlplane.backup_alarm()
    if alarm:
        findings.append(
            Finding(
                "backups",
                ERROR,
                alarm,
                "take one now and see why: `manage.py backup --output /var/backups/berth.tar.gz`",
            )
        )
    return findings


def node_findings() -> list[Finding]:
    """Swarm nodes whose heartbeat stopped (down, disconnected) or that cannot take work."""
    findings = []
    for node in node_list():
        if node.state != "ready":
            findings.append(
                Finding(
                    "nodes",
                    WARNING,
                    f"node {node.hostname} ({node.role}) is {node.state}: Swarm has stopped hearing its heartbeat",
                    f"start its Docker engine again, or `berth nodes:remove {node.hostname}` if it is gone",
                )
            )
        elif node.availability != "active":
            findings.append(
                Finding(
                    "nodes",
                    WARNING,
                    f"node {node.hostname} is {node.availability}: no new work is placed there",
                    f"`berth nodes:activate {node.hostname}` when its maintenance is over",
                )
            )
    return findings


def registry_findings() -> list[Finding]:
    """Berth's private registry (when BERTH_REGISTRY is set) answering its API to Berth's credentials."""
    if not registry_enabled():
        return []
    problem = registry_ping()
    if problem is None:
        return []
    return [
        Finding(
            "registry",
            ERROR,
            f"the registry {settings.BERTH_REGISTRY} {problem}: builds cannot be pushed nor other nodes pull",
            "start the `registry` process (make up; systemd: berth-registry.service); "
            "its output is in BERTH_HOME/log/registry.log",
        )
    ]


def operator_findings(*, database: bool, docker: bool) -> list[Finding]:
    """Every finding; the checks that need the database or the engine run only when those answered."""
    findings = disk_findings() + registry_findings()
    if database:
        findings += certificate_findings() + addon_backup_findings()
    if docker:
        findings += node_findings()
    return findings
