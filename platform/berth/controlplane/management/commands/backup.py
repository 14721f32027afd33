from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from berth.controlplane.services import BackupError, backup_to_file


class Command(BaseCommand):
    help = (
        "Write one archive of the control plane: the database, the keys, every git repository, the router's state "
        "and the registry's credentials (its blobs with --with-registry-blobs). Restore it with `manage.py restore`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", help="the archive's path (default: ./berth-backup-<time>.tar.gz)")
        parser.add_argument("--with-registry-blobs", action="store_true", help="also the registry's images")

    def handle(self, *args, **options):
        try:
            self._handle(**options)
        except DatabaseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"database error: {first}") from None

    def _handle(self, *args, output=None, with_registry_blobs=False, **options):
        path = Path(output or f"berth-backup-{timezone.now():%Y%m%d-%H%M%S}.tar.gz").expanduser().absolute()
        try:
            manifest = backup_to_file(path, with_registry_blobs=with_registry_blobs)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        counts = ", ".join(f"{n} {what}" for what, n in manifest["counts"].items())
        size = manifest["size"]
        size = (
            "streamed"
            if size is None
            else f"{size / 2**20:.1f} MB"
            if size >= 2**20
            else f"{size / 1024:.0f} KiB"
        )
        self.stdout.write(
            f"backup written to {path}: {size}, {len(manifest['members'])} members, {counts}, "
            f"database {manifest['database']['kind']}, in {manifest['seconds']:.1f} s"
        )
        if manifest["from_environment"]:
            self.stdout.write(
                f"not in the archive (given in the environment; keep them): {', '.join(manifest['from_environment'])}"
            )
