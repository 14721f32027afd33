from django.core.management.base import BaseCommand, CommandError

from berth.operations.migration_safety import pending_findings, pending_migrations, unknown_applied


class Command(BaseCommand):
    help = (
        "Before an upgrade's `migrate`: refuse when the database is newer than this code (a downgrade), or when a "
        "pending migration is unsafe while the previous version still serves (drops or renames what it reads, locks "
        "a table, cannot be undone) and does not say why it is fine (berth_unsafe_ok)."
    )

    def handle(self, *args, **options):
        ahead = unknown_applied()
        if ahead:
            raise CommandError(
                "the database is newer than this code (a downgrade?): it has applied "
                + ", ".join(ahead)
                + "; run this version against a database migrated by it, or revert those with the newer code first"
            )
        pending = pending_migrations()
        if not pending:
            self.stdout.write("migrations: none to apply")
            return
        self.stdout.write(
            f"migrations: {len(pending)} to apply: " + ", ".join(f"{m.app_label}.{m.name}" for m in pending)
        )
        refused = []
        for finding in pending_findings():
            if finding.accepted:
                self.stdout.write(
                    f"  accepted  {finding.migration}: {finding.operation} {finding.why} ({finding.accepted})"
                )
            else:
                self.stdout.write(f"  unsafe    {finding.migration}: {finding.operation} {finding.why}")
                refused.append(finding.migration)
        if refused:
            raise CommandError(
                f"{len(refused)} unsafe operation(s) while the previous version still serves; split the change "
                "(add first, remove in a later release) or say why it is fine with berth_unsafe_ok in the migration"
            )
