import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from berth.controlplane.services import RestoreError, restore, target_holds


class Command(BaseCommand):
    help = (
        "Restore a `manage.py backup` archive onto this machine (BERTH_HOME and the database empty, or --force): "
        "every checksum is checked first, then the database, the files and keys; what Swarm still runs is "
        "re-adopted and a live release whose services are gone is started again from its image."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", help="the archive `manage.py backup` wrote")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument(
            "--force", action="store_true", help="overwrite a database and BERTH_HOME holding data"
        )

    def handle(self, *args, **options):
        try:
            self._handle(**options)
        except DatabaseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"database error: {first}") from None

    def _handle(self, *args, archive, yes=False, force=False, **options):
        held = target_holds()
        if held and not force:
            raise CommandError(
                "the target is not empty: " + "; ".join(held) + " (restore --force overwrites them)"
            )
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("restore replaces the control plane's state: confirm with --yes")
            what = "; ".join(held) if held else "an empty installation"
            if input(f"Restore {archive} over {what}? [y/N] ").strip().lower() not in ("y", "yes"):
                raise CommandError("restore cancelled")
        try:
            with open(archive, "rb") as stream:
                report = restore(stream, force=force, log=self.stdout.write)
        except FileNotFoundError:
            raise CommandError(f"no archive at {archive}") from None
        except RestoreError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"restored in {report.seconds:.1f} s")
        if report.not_redeployed:
            raise CommandError(
                f"{len(report.not_redeployed)} release(s) could not be redeployed (listed above)"
            )
