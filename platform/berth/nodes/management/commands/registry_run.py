import os

from django.conf import settings
from django.core.management.base import CommandError

from berth.core.management.daemon import DaemonCommand
from berth.runtime.registry import registry_command, registry_config_path, registry_config_write


class Command(DaemonCommand):
    help = (
        "Write the private registry's config and htpasswd under BERTH_REGISTRY_DIR and run Debian's "
        "docker-registry in the foreground on BERTH_REGISTRY_LISTEN."
    )

    def handle(self, *args, **options):
        if not settings.BERTH_REGISTRY:
            raise CommandError("BERTH_REGISTRY is empty: the registry is off (images stay on this node)")
        directory = registry_config_path().parent
        config = registry_config_write(
            directory=directory,
            listen=settings.BERTH_REGISTRY_LISTEN,
            users={settings.BERTH_REGISTRY_USER: settings.BERTH_REGISTRY_PASSWORD},
        )
        # the htpasswd and the stored images are Berth's alone
        os.chmod(directory, 0o700)
        os.chmod(directory / "htpasswd", 0o600)
        command = registry_command(config)
        self.stdout.write(f"registry: {' '.join(command)} (listening on {settings.BERTH_REGISTRY_LISTEN})")
        self.stdout.flush()
        os.execvp(command[0], command)
