import logging

from django.core.management.base import BaseCommand

from berth.core.docker import docker_client

logger = logging.getLogger("berth.watcher")


class Command(BaseCommand):
    help = "Follow Docker events for Berth's services and tasks (the service-discovery watcher)."

    def handle(self, *args, **options):
        client = docker_client(timeout=None)
        self.stdout.write("watcher: following Docker events")
        self.stdout.flush()
        for event in client.events(decode=True, filters={"label": "org.berth.app"}):
            logger.info(
                "event %s %s %s", event.get("Type"), event.get("Action"), event.get("Actor", {}).get("ID")
            )
