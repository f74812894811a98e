"""Benchmark: the full pre-trade check of one intent against one ORM insert of a row.

Issue 3's goal: the checks cost at most 0.1x an insert, so checking every order is free next
to persisting it. The Order model arrives with routing (issue 4); until then the baseline is
the insert of one ``Heartbeat`` row through the ORM (a narrow row: if anything, a cheaper
baseline than an order row, so the ratio is conservative). Needs Django set up (run.py does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from risk.checks import pretrade_check
from risk.limits import AccountView, Limits, OrderIntent, Side

SYMBOLS = [f"SYM{n}USDT" for n in range(20)]
LIMITS = Limits(
    max_order_notional=Decimal("10000"),
    max_position_notional=Decimal("50000"),
    max_gross_exposure=Decimal("500000"),
    max_leverage=Decimal("5"),
    max_daily_loss=Decimal("0.03"),
    max_drawdown=Decimal("0.10"),
    max_open_orders=50,
    loss_streak_limit=5,
    loss_streak_cooldown=timedelta(hours=1),
    min_liquidation_distance=Decimal("0.25"),
    autotune_floor=Decimal("0.25"),
    kill_switch=False,
)
ACCOUNT = AccountView(
    nav=Decimal("200000"),
    drawdown=Decimal("0.02"),
    daily_loss=Decimal("0.005"),
    loss_streak=1,
    cooldown_until=None,
    halted=False,
    halt_reason="",
    open_orders=7,
)
POSITIONS = {symbol: Decimal("1.5") * (1 if n % 2 else -1) for n, symbol in enumerate(SYMBOLS)}
MARKS = {symbol: Decimal("1000") + n for n, symbol in enumerate(SYMBOLS)}
INTENT = OrderIntent(
    symbol=SYMBOLS[3], side=Side.BUY, quantity=Decimal("2.5"), price=Decimal("1003")
)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _per_call(call: Callable[[], Any], *, number: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def run() -> list[dict[str, Any]]:
    from django.utils import timezone

    from doctor.models import Heartbeat

    def check() -> object:
        decision = pretrade_check(
            intent=INTENT, account=ACCOUNT, limits=LIMITS, positions=POSITIONS, marks=MARKS, now=NOW
        )
        assert decision.ok, decision.message
        return decision

    def insert() -> object:
        return Heartbeat.objects.create(component="bench", created_at=timezone.now(), metrics={})

    try:
        check_seconds = _per_call(check, number=2000)
        insert_seconds = _per_call(insert, number=200)
    finally:
        Heartbeat.objects.filter(component="bench").delete()
    ratio = check_seconds / insert_seconds
    return [
        {
            "name": "pre-trade check of one intent (20 symbols with positions, all checks)",
            "seconds": check_seconds,
            "baseline_name": "ORM insert of one row (Heartbeat; Order arrives in issue 4)",
            "baseline_seconds": insert_seconds,
            "ratio": ratio,
            "goal": "≤ 0.1x",
            "met": ratio <= 0.1,
        }
    ]


if __name__ == "__main__":
    from tests.benchmarks.run import _setup_django

    _setup_django()
    for row in run():
        print(row)
