from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.books import attribution_rebuild
from routing.health import router_health_rebuild
from tradingsite.locks import single_flight


class Command(BaseCommand):
    help = (
        "Recount router health from the books: with --attribution, first attribute every fill "
        "to its signal source again (virtual positions rebuilt), then rebuild the cells and "
        "summaries. Runs under the executor's lock (between ticks)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--attribution",
            action="store_true",
            help="Also rebuild the per-signal attribution (after upgrading an install).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ttl = settings.EXECUTOR_INTERVAL_SECONDS * 6
        with single_flight("executor-tick", ttl_seconds=ttl) as run:
            if not run.acquired:
                raise CommandError("the executor is ticking: try again in a moment")
            if options["attribution"]:
                shares = attribution_rebuild()
                self.stdout.write(f"attributed {shares} fill share(s)")
            report = router_health_rebuild()
        if not report.ran:
            raise CommandError("a router health refresh is running: try again in a moment")
        self.stdout.write(f"router health rebuilt from {report.ingested} row(s)")
