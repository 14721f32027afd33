from django.core.management.base import BaseCommand

from berth.releases.services import config_reencrypt_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every config value and release snapshot with the first key of BERTH_ENCRYPTION_KEY. "
        "Put the new key first (keeping the old ones after it), run this, then drop the old keys."
    )

    def handle(self, *args, **options):
        counts = config_reencrypt_all()
        self.stdout.write(
            f"re-encrypted {counts['config_vars']} config values and {counts['releases']} releases"
        )
