from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.binance_testserver import FAULT_KINDS, BinanceTestServer, FaultKind


class Command(BaseCommand):
    help = (
        "Run the local Binance USD-M futures test server in the foreground (Ctrl-C stops it); "
        "point BINANCE_FUTURES_URL at the URL it prints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9000, help="0 picks a free port.")
        parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="Comma-separated.")
        parser.add_argument("--api-key", default="test-api-key")
        parser.add_argument("--api-secret", default="test-api-secret")
        parser.add_argument("--balance", type=Decimal, default=Decimal("10000"), help="USDT.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--walk",
            type=float,
            default=1.0,
            help="Seconds between random-walk price moves (0: off).",
        )
        parser.add_argument(
            "--fault-rate", type=float, default=0.0, help="Probability of a fault per request."
        )
        parser.add_argument(
            "--fault-kinds", default=",".join(FAULT_KINDS), help="Comma-separated fault kinds."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        server = BinanceTestServer(
            options["api_key"],
            options["api_secret"],
            [name.strip().upper() for name in options["symbols"].split(",") if name.strip()],
            balance=options["balance"],
            seed=options["seed"],
            host=options["host"],
            port=options["port"],
        ).start()
        if options["fault_rate"] > 0:
            kinds: list[FaultKind] = [
                k for k in FAULT_KINDS if k in options["fault_kinds"].split(",")
            ]
            server.faults.random(options["fault_rate"], kinds)
        if options["walk"] > 0:
            server.start_price_walk(options["walk"])
        self.stdout.write(f"BINANCE_FUTURES_URL={server.url}")
        self.stdout.write(f"BINANCE_API_KEY={server.api_key}")
        self.stdout.write(f"BINANCE_API_SECRET={server.api_secret}")
        self.stdout.write("Binance test server running; Ctrl-C to stop.")
        server.serve_until_interrupted()
