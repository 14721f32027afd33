from django.core.management.base import BaseCommand, CommandError

from berth.builds.stack import VARIANTS, StackBuildError, stack_build


class Command(BaseCommand):
    help = "Build the stack image(s) buildpacks build FROM, from Debian packages (skipped when current)."

    def add_arguments(self, parser):
        parser.add_argument("variants", nargs="*", default=["base"], help=f"one of {', '.join(VARIANTS)}")
        parser.add_argument("--force", action="store_true", help="rebuild even if the recipe is unchanged")

    def handle(self, *args, variants, force, **options):
        for variant in variants:
            try:
                stack_build(variant, force=force, echo=lambda line: self.stdout.write(line))
            except StackBuildError as exc:
                raise CommandError(str(exc)) from exc
