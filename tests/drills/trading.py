"""Trading while a drill runs: generous limits, a bar history to size from, and a feeder of
external signals (``routing.signal_services.signal_submit``) so that every few ticks route
orders to the test server. Imported after Django is set up; used by the Firestore and
PostgreSQL drills."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import Error as DatabaseError
from django.db import close_old_connections, connection

from risk.limits import Side
from risk.models import RiskLimit
from routing.models import MarketBar, Order
from routing.signal_services import signal_submit
from tests.drills.stack import Stack

SOURCE = "drill"
HISTORY_BARS = 90
# Orders of ~1,000 USDT on a 1,000,000 USDT account: no limit of the drill's own making
# (daily loss, loss streak, exposure) ever stops them.
GENEROUS_LIMITS = {
    "max_order_notional": Decimal("2000"),
    "max_position_notional": Decimal("20000"),
    "max_gross_exposure": Decimal("200000"),
    "max_leverage": Decimal("3"),
    "max_daily_loss": Decimal("0.5"),
    "max_drawdown": Decimal("0.5"),
    "max_open_orders": 1000,
    "loss_streak_limit": 1_000_000,
    "loss_streak_cooldown_seconds": 1,
    "kill_switch": False,
}


def trading_prepare(stack: Stack, *, seed: int = 7) -> None:
    """Before ``stack.start_processes()``: generous global limits, an hour and a half of closed
    1m bars before the test server's first one (the sizer's volatility needs 61), and the
    server's prices walking."""
    row = RiskLimit.objects.filter(symbol="").first() or RiskLimit(symbol="")
    for name, value in GENEROUS_LIMITS.items():
        setattr(row, name, value)
    row._change_reason = "drill: generous limits"  # type: ignore[attr-defined]
    row.save()
    rng = random.Random(seed)
    first_open = datetime.now(UTC).replace(second=0, microsecond=0)
    bars = []
    for symbol in stack.symbols:
        price = stack.binance.price(symbol)
        closes = [price]
        for _ in range(HISTORY_BARS - 1):
            closes.append((closes[-1] * Decimal(str(1 + rng.gauss(0, 0.001)))).quantize(price))
        closes.reverse()
        for index, close in enumerate(closes):
            opened = first_open - timedelta(minutes=HISTORY_BARS - index)
            previous = closes[index - 1] if index else close
            bars.append(
                MarketBar(
                    symbol=symbol,
                    interval="1m",
                    open_time=opened,
                    close_time=opened + timedelta(seconds=59, milliseconds=999),
                    open=previous,
                    high=max(previous, close),
                    low=min(previous, close),
                    close=close,
                    volume=Decimal("10"),
                )
            )
    MarketBar.objects.bulk_create(bars, ignore_conflicts=True)
    stack.binance.start_price_walk(interval=1.0, volatility=Decimal("0.0005"), seed=seed)


@dataclass
class SignalFeeder:
    """Submits one external signal every ``period`` seconds, symbols in turn and each symbol's
    side alternating, so each one moves the drill source's position and the next tick routes
    an order. Gentle on purpose: with a tick a second, a faster feed spends the venue's request
    weight budget (80 % of 2,400 a minute) and the ticks wait for the next minute. Survives
    database outages (the failed submission is counted and the connection reopened)."""

    symbols: list[str]
    period: float = 5.0
    submitted: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SignalFeeder:
        self._thread = threading.Thread(target=self._loop, name="signal-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        buy = dict.fromkeys(self.symbols, True)
        turn = 0
        try:
            while not self._stop.is_set():
                symbol = self.symbols[turn % len(self.symbols)]
                turn += 1
                try:
                    close_old_connections()
                    signal_submit(
                        symbol=symbol,
                        side=Side.BUY if buy[symbol] else Side.SELL,
                        strength="1",
                        source=SOURCE,
                    )
                    self.submitted += 1
                    buy[symbol] = not buy[symbol]
                except DatabaseError as error:
                    self.failures[type(error).__name__] += 1
                    connection.close()
                self._stop.wait(self.period)
        finally:
            connection.close()


def orders_routed_since(since: datetime) -> int:
    return Order.objects.filter(decided_at__gt=since, signal__source=SOURCE).count()
