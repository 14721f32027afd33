import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin (BERTH_ADMIN_USER / BERTH_ADMIN_PASSWORD) if no superuser exists yet."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("an admin already exists; nothing to do")
            return
        password = settings.BERTH_ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(16)
        User.objects.create_superuser(username=settings.BERTH_ADMIN_USER, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"created admin user {settings.BERTH_ADMIN_USER!r}"))
        if generated:
            # printed once, never stored in clear
            self.stdout.write(self.style.WARNING(f"its generated password (shown only now): {password}"))
