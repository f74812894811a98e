from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.signal_services import signal_submit


class Command(BaseCommand):
    help = "Record an external signal (status new) and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True, help="a traded symbol, e.g. BTCUSDT")
        parser.add_argument("--side", required=True, help="BUY or SELL")
        # A string, not float: the strength reaches the Decimal column digit for digit.
        parser.add_argument("--strength", required=True, help="conviction in [0, 1]")
        parser.add_argument("--source", required=True, help="external source name, e.g. my_model")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            signal = signal_submit(
                symbol=options["symbol"].upper(),
                side=options["side"].upper(),
                strength=options["strength"],
                source=options["source"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(str(signal.pk))
