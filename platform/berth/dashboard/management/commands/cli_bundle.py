"""`manage.py cli_bundle`: make the one-file `berth` command the dashboard serves at /cli/berth (made on the first
download otherwise), and print where it is."""

from django.core.management.base import BaseCommand

from berth.dashboard.clibundle import cli_bundle


class Command(BaseCommand):
    help = "Make the one-file berth command for teammates' laptops (served at /cli/berth)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="make it again even if nothing changed")

    def handle(self, *args, force: bool = False, **options):
        path = cli_bundle(force=force)
        self.stdout.write(f"{path} ({path.stat().st_size // 1024} KB)")
