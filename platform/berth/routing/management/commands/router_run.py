import os

from django.core.management.base import BaseCommand

from berth.routing.haproxy import haproxy_command, write_config


class Command(BaseCommand):
    help = "Write the router's HAProxy configuration and run HAProxy in the foreground (master-worker)."

    def handle(self, *args, **options):
        paths = write_config()
        command = haproxy_command(paths)
        self.stdout.write(f"router: {' '.join(command)}")
        self.stdout.flush()
        os.execvp(command[0], command)
