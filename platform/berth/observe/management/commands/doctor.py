from django.core.management.base import BaseCommand, CommandError

from berth.observe.health import check_health


class Command(BaseCommand):
    help = "Check that Berth's database, Redis, Docker, swarm and router are reachable."

    def handle(self, *args, **options):
        checks = check_health()
        width = max(len(name) for name in checks)
        for name, result in checks.items():
            style = self.style.SUCCESS if result == "ok" else self.style.ERROR
            self.stdout.write(f"{name.ljust(width)}  {style(result)}")
        if any(result != "ok" for result in checks.values()):
            raise CommandError("some checks failed")
