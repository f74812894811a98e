from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.tasks import executor_run_once


class Command(BaseCommand):
    help = "Run the executor tick in this process: once, or N times at the configured interval."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--once", action="store_true", help="One tick.")
        group.add_argument("--ticks", type=int, help="N ticks, EXECUTOR_INTERVAL_SECONDS apart.")

    def handle(self, *args: Any, **options: Any) -> None:
        ticks = 1 if options["once"] else options["ticks"]
        if ticks < 1:
            raise CommandError("--ticks must be at least 1")
        for n in range(ticks):
            if n:
                time.sleep(settings.EXECUTOR_INTERVAL_SECONDS)
            report = executor_run_once()
            if report is None:
                self.stderr.write("skipped: another tick holds the executor lock")
                continue
            self.stdout.write(
                f"tick {n + 1}/{ticks}: {report['signals']} signals, {report['orders']} orders, "
                f"{report['rejects']} refused, {report['fills']} fills, NAV {report['nav']} "
                f"({report['duration_ms']} ms)"
            )
