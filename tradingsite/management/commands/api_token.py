from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from tradingsite.accounts import is_operator, is_viewer


class Command(BaseCommand):
    help = (
        "Create a user's API token (printed once: keep it secret), replace it (--rotate) or "
        "delete it (--revoke). The token carries the user's role: viewer reads, operator also "
        "writes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="The username.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--rotate", action="store_true", help="Replace the user's token (the old one stops)."
        )
        action.add_argument(
            "--revoke", action="store_true", help="Delete the user's token (it stops at once)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        if options["revoke"]:
            deleted, _ = Token.objects.filter(user=user).delete()
            if not deleted:
                raise CommandError(f"{user.get_username()!r} has no token")
            self.stdout.write(f"token of {user.get_username()} revoked")
            return
        if not user.is_active:
            raise CommandError(f"user {user.get_username()!r} is not active")
        if not is_viewer(user):
            raise CommandError(
                f"user {user.get_username()!r} has no role: add them to the viewer or operator "
                "group first (admin: Users)"
            )
        with transaction.atomic():
            existing = Token.objects.select_for_update().filter(user=user).first()
            if existing is not None and not options["rotate"]:
                raise CommandError(
                    f"{user.get_username()!r} already has a token; --rotate replaces it "
                    "(the old one stops working)"
                )
            if existing is not None:
                existing.delete()
            token = Token.objects.create(user=user)
        role = "operator" if is_operator(user) else "viewer"
        self.stderr.write(f"token for {user.get_username()} ({role}); shown once, keep it secret:")
        self.stdout.write(token.key)
