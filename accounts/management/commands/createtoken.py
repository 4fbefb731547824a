from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services
from accounts.models import TokenScope


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument(
            "--scope",
            default=TokenScope.ADMIN,
            choices=TokenScope.values,
            help="read: view and export; write: also log, change and delete runs; admin (default): all the user may do",
        )
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="expiry, in days from now (default: none)"
        )

    def handle(self, *args, username, name, scope, expires_in_days, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1")
        expires_at = None if expires_in_days is None else timezone.now() + timedelta(days=expires_in_days)
        _, raw = services.issue_token(user, name=name, scope=scope, expires_at=expires_at)
        self.stdout.write(raw)
