from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from berth.observe.health import check_health
from berth.operations.checks import ERROR, operator_findings
from berth.runtime.client import ENGINE_UNAVAILABLE
from berth.runtime.installation import KINDS, foreign_installations


class Command(BaseCommand):
    help = (
        "Check that Berth's database, Redis, Docker, swarm and router are reachable; then what an operator watches "
        "(disk space, certificates near expiry whose renewal fails, backups, nodes), each with its fix; and "
        "another installation's leftovers on this engine."
    )

    def handle(self, *args, **options):
        checks = check_health()
        width = max(len(name) for name in checks)
        for name, result in checks.items():
            style = self.style.SUCCESS if result == "ok" else self.style.ERROR
            self.stdout.write(f"{name.ljust(width)}  {style(result)}")
        findings = operator_findings(
            database=checks.get("database") == "ok", docker=checks.get("docker") == "ok"
        )
        for name in ("disk", "certs", "backups", "nodes"):
            found = [f for f in findings if f.check == name]
            if not found:
                self.stdout.write(f"{name.ljust(width)}  {self.style.SUCCESS('ok')}")
            for finding in found:
                style = self.style.ERROR if finding.severity == ERROR else self.style.WARNING
                self.stdout.write(f"{name.ljust(width)}  {style(finding.severity + ': ' + finding.message)}")
                # labelled like every line ("<what> <text>"): a script reading checks by their first word skips it
                self.stdout.write(f"  fix         {finding.fix}")
        if checks.get("docker") == "ok":
            self._foreign_leftovers()
        if any(result != "ok" for result in checks.values()) or any(f.severity == ERROR for f in findings):
            raise CommandError("some checks failed")

    def _foreign_leftovers(self) -> None:
        """Another install's services and the like: never shown nor touched by this one; said, not failed on."""
        self.stdout.write(f"installation  {settings.BERTH_INSTALLATION_ID}")
        try:
            others = foreign_installations()
        except ENGINE_UNAVAILABLE as exc:
            self.stdout.write(self.style.ERROR(f"leftovers     error: could not list them: {exc}"))
            return
        if not others:
            self.stdout.write(f"leftovers     {self.style.SUCCESS('none of another installation')}")
            return
        for other in others:
            counts = ", ".join(f"{other.counts[kind]} {kind}" for kind in KINDS if other.counts[kind])
            self.stdout.write(
                self.style.WARNING(
                    f"leftovers     another installation ({other.installation}) left {counts} on this engine; "
                    "Berth neither shows nor touches them. To remove them:"
                )
            )
            for command in other.remove_commands:
                # labelled like every other line ("<what> <text>"): a script reading the checks by their first word
                # never takes a removal command for the `docker` check
                self.stdout.write(f"  remove      {command}")
