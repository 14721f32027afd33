import os

from django.core.management.base import BaseCommand

from berth.routing.haproxy import haproxy_command, write_config


class Command(BaseCommand):
    # a daemon: Django's system checks ran with `migrate`, which `make up` runs before it starts the daemons; here
    # they would import every view for the URL checks: ~0.2 s of CPU, and ~14 MB of PSS in a process that serves none
    requires_system_checks: list[str] = []

    help = "Write the router's HAProxy configuration and run HAProxy in the foreground (master-worker)."

    def handle(self, *args, **options):
        paths = write_config()
        command = haproxy_command(paths)
        self.stdout.write(f"router: {' '.join(command)}")
        self.stdout.flush()
        os.execvp(command[0], command)
