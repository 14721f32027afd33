import json

from django.core.management.base import BaseCommand, CommandError

from berth.apps.models import App
from berth.nodes.images import images_gc


class Command(BaseCommand):
    help = (
        "Delete the images of old releases (all but the last BERTH_IMAGE_RETENTION_RELEASES of each app and the "
        "live one) from the registry, this manager and every other node."
    )

    def add_arguments(self, parser):
        parser.add_argument("--app", help="only this app")
        parser.add_argument("--keep", type=int, help="releases to keep per app (default: the setting)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, app=None, keep=None, json=False, **options):
        target = None
        if app:
            target = App.objects.filter(name=app).first()
            if target is None:
                raise CommandError(f"no app {app!r}")
        if keep is not None and keep < 1:
            raise CommandError("--keep must be 1 or more")
        report = images_gc(app=target, keep_releases=keep, log=self.stdout.write)
        if json:
            self.stdout.write(_dumps(report.as_dict()))
            return
        self.stdout.write(
            f"{report.apps} apps: {report.releases_pruned} releases pruned, {report.manifests_deleted} manifests "
            f"deleted from the registry, {len(report.local_removed)} image references removed here, "
            f"{len(report.nodes_removed)} on other nodes, {len(report.in_use)} in use (kept)"
        )
        if report.registry_gc:
            self.stdout.write(f"registry garbage-collect: {report.registry_gc}")
        for error in report.errors:
            self.stderr.write(f"error: {error}")


def _dumps(data: dict) -> str:
    return json.dumps(data, indent=2)
