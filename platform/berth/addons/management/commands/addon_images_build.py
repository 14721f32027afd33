from django.core.management.base import BaseCommand, CommandError

from berth.addons.images import IMAGES, AddonImageBuildError, addon_image_build


class Command(BaseCommand):
    help = "Build the add-on images (PostgreSQL, Redis) from Debian packages (skipped when current)."

    def add_arguments(self, parser):
        parser.add_argument("kinds", nargs="*", default=list(IMAGES), help=f"any of {', '.join(IMAGES)}")
        parser.add_argument("--force", action="store_true", help="rebuild even if the recipe is unchanged")

    def handle(self, *args, kinds, force, **options):
        for kind in kinds:
            try:
                addon_image_build(kind, force=force, echo=lambda line: self.stdout.write(line))
            except AddonImageBuildError as exc:
                raise CommandError(str(exc)) from exc
