from django.core.management.base import BaseCommand

from berth.discovery.services import watch


class Command(BaseCommand):
    # a daemon: Django's system checks ran with `migrate`, which `make up` runs before it starts the daemons; here
    # they would import every view for the URL checks: ~0.2 s of CPU, and ~14 MB of PSS in a process that serves none
    requires_system_checks: list[str] = []

    help = (
        "Follow Docker events for Berth's apps and keep the router in step (the service-discovery watcher)."
    )

    def handle(self, *args, **options):
        self.stdout.write("watcher: following Docker events; full reconcile every few seconds")
        self.stdout.flush()
        watch()
