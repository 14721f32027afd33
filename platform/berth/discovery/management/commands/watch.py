from berth.core.management.daemon import DaemonCommand
from berth.discovery.services import watch


class Command(DaemonCommand):
    help = (
        "Follow Docker events for Berth's apps and keep the router in step (the service-discovery watcher)."
    )

    def handle(self, *args, **options):
        self.stdout.write("watcher: following Docker events; full reconcile every few seconds")
        self.stdout.flush()
        watch()
