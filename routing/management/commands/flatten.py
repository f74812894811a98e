from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.protection import flatten
from routing.runtime import venue_session
from tradingsite.guard import ProdWriteRefused, check_command_write, guard_context


class Command(BaseCommand):
    help = (
        "Cancel open entry orders and close every position with reduce-only market orders "
        "(sent even while halted or with the kill switch on)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", required=True, help="Why (logged with the orders).")
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required (with ALLOW_PROD_WRITES=1) in prod."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_command_write(
                guard_context(), command="flatten", allow_prod_flag=options["allow_prod"]
            )
            with venue_session() as venue:
                orders = flatten(
                    venue=venue,
                    symbols=tuple(settings.SYMBOLS),
                    actor="flatten command",
                    reason=options["reason"],
                )
        except (ProdWriteRefused, ValueError) as error:
            raise CommandError(str(error)) from None
        if not orders:
            self.stdout.write("flat: no position to close")
        for order in orders:
            why = f" ({order.last_error})" if order.last_error else ""
            self.stdout.write(
                f"{order.side} {order.quantity} {order.symbol} reduce-only market "
                f"{order.client_order_id}: {order.status}{why}"
            )
