from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tradingsite.devstack import devstack_run
from tradingsite.embedded_redis import EmbeddedRedisError


class Command(BaseCommand):
    help = "Run the development stack (web, worker, ml, beat, embedded Redis) until Ctrl-C."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = devstack_run(say=lambda line: self.stdout.write(line))
        except (PermissionError, EmbeddedRedisError) as error:
            raise CommandError(str(error)) from None
        if status not in (0, -2, 130):
            raise CommandError(f"the stack stopped with status {status}")
