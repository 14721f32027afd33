import os

from berth.core.management.daemon import DaemonCommand
from berth.routing.haproxy import haproxy_command, write_config


class Command(DaemonCommand):
    help = "Write the router's HAProxy configuration and run HAProxy in the foreground (master-worker)."

    def handle(self, *args, **options):
        paths = write_config()
        command = haproxy_command(paths)
        self.stdout.write(f"router: {' '.join(command)}")
        self.stdout.flush()
        os.execvp(command[0], command)
