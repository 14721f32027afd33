"""The base of Berth's long-running commands (deploy/Procfile's daemons, router and registry; the watcher and the
log shipper run alone)."""

from django.core.management.base import BaseCommand


class DaemonCommand(BaseCommand):
    """A command that runs until stopped. It starts without Django's system checks: `migrate`, which `make up` runs
    before it starts the daemons, ran them; here their URL check would import every view, ~0.2 s of CPU at each
    start and ~14 MB of PSS in a process that serves none (the daemons process: 97 -> 83 MB)."""

    requires_system_checks: list[str] = []
