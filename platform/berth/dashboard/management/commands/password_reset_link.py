"""`manage.py password_reset_link <username>`: a platform admin's way to let someone back in when the server sends
no e-mail. Prints the dashboard's reset link (on BERTH_PUBLIC_URL) for the admin to hand over; it works once, until
the password changes, and for PASSWORD_RESET_TIMEOUT at most."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from berth.accounts.services import password_reset_url


class Command(BaseCommand):
    help = "Print a password reset link for a user (hand it to them; it works once)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {username!r}")
        self.stdout.write(password_reset_url(user=user))
