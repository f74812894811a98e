"""Readings the worker-kill and scale-out drills share: the venue's orders against ours, the
executor's ticks from their heartbeats, and which worker ran which task (from the logs)."""

from __future__ import annotations

import itertools
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from risk.services import limits_write
from routing.binance_testserver import BinanceTestServer
from routing.models import MarketBar, Order
from tests.drills.stack import Child
from tradingsite.redisconn import redis_client, redis_key

EXECUTOR_LOCK = "executor-tick"  # routing.tasks._under_executor_lock
# Celery's worker log: "Task <name>[<id>] succeeded in ..." (a task that raised says "raised").
TASK_DONE = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] (?:succeeded|raised)")


def lock_holder_in(child: Child, name: str = EXECUTOR_LOCK) -> bool:
    """Whether a process of ``child``'s session holds the single-flight lock ``name`` (its
    value names the holder: host|pid namespace|pid|token, ``tradingsite.locks``)."""
    value = redis_client().get(redis_key("lock", name))
    if not isinstance(value, bytes):
        return False
    parts = value.decode(errors="replace").split("|")
    if len(parts) != 4 or not parts[2].isdigit() or not child.running:
        return False
    try:
        return os.getsid(int(parts[2])) == child.pid
    except OSError:
        return False


def generous_limits() -> None:
    """Limits under which an external signal becomes an order every time (the drills are about
    processes, not risk): larger sizes, and no loss-streak cooldown from round trips."""
    limits_write(
        symbol="",
        changes={
            "max_order_notional": Decimal("2000"),
            # Room for the built-in sources' positions beside the drill's own signals.
            "max_position_notional": Decimal("100000"),
            "max_gross_exposure": Decimal("300000"),
            "max_open_orders": 200,
            "loss_streak_limit": 100_000,
            "max_daily_loss": Decimal("0.5"),
            "max_drawdown": Decimal("0.5"),
        },
        actor="drill",
        reason="the drill routes an order on every kill",
    )


def bars_seed(
    server: BinanceTestServer, symbols: list[str], *, bars: int, seed: int = 20261127
) -> int:
    """Closed 1m bars before the test server's own (it has none before it started): a seeded
    random walk ending at each symbol's price, so the sizer has its volatility window (and the
    ML retrain its rows) from the first tick."""
    rng = random.Random(seed)
    first = datetime.now(UTC).replace(second=0, microsecond=0)  # the server's first bar opens
    rows = []
    for symbol in symbols:
        price = float(server.price(symbol))
        closes = [price]
        for _ in range(bars):
            closes.append(closes[-1] * (1 + rng.gauss(0, 0.0015)))
        closes.reverse()  # oldest first, the newest close at the current price
        for n in range(bars):
            opened = first - timedelta(minutes=bars - n)
            open_, close = closes[n], closes[n + 1]
            high = max(open_, close) * (1 + abs(rng.gauss(0, 0.0005)))
            low = min(open_, close) * (1 - abs(rng.gauss(0, 0.0005)))
            rows.append(
                MarketBar(
                    symbol=symbol,
                    interval="1m",
                    open_time=opened,
                    close_time=opened + timedelta(seconds=59.999),
                    open=Decimal(f"{open_:.2f}"),
                    high=Decimal(f"{high:.2f}"),
                    low=Decimal(f"{low:.2f}"),
                    close=Decimal(f"{close:.2f}"),
                    volume=Decimal(rng.randint(10, 1000)),
                )
            )
    MarketBar.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


@dataclass(frozen=True)
class VenueComparison:
    accepted: int  # orders the venue accepted (regular and algo)
    duplicates: int  # accepted beyond one per client order id
    unknown_to_us: int  # accepted client ids with no local Order row
    sent_twice: int  # local orders the venue accepted more than once
    unresolved: list[str]  # local orders still pending/submitting/unknown

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.unknown_to_us or self.sent_twice)


def venue_compare(server: BinanceTestServer) -> VenueComparison:
    accepted = Counter(order.client_order_id for order in server.accepted_orders)
    local = dict(Order.objects.values_list("client_order_id", "status"))
    return VenueComparison(
        accepted=sum(accepted.values()),
        duplicates=sum(count - 1 for count in accepted.values()),
        unknown_to_us=sum(count for cid, count in accepted.items() if cid not in local),
        sent_twice=sum(1 for cid, count in accepted.items() if cid in local and count > 1),
        unresolved=[
            cid
            for cid, status in local.items()
            if status in {Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.UNKNOWN}
        ],
    )


@dataclass(frozen=True)
class Tick:
    started_at: datetime
    ended_at: datetime


def ticks_between(since: datetime, until: datetime | None = None) -> list[Tick]:
    """The live executor ticks whose heartbeat was written after ``since``, by start."""
    from doctor.models import Heartbeat

    rows = Heartbeat.objects.filter(component="executor", created_at__gt=since)
    if until is not None:
        rows = rows.filter(created_at__lte=until)
    ticks = [
        Tick(datetime.fromisoformat(str(metrics["started_at"])), created_at)
        for created_at, metrics in rows.values_list("created_at", "metrics")
        if metrics.get("run", "live") == "live" and metrics.get("started_at")
    ]
    return sorted(ticks, key=lambda tick: tick.started_at)


def ticks_overlapping(ticks: list[Tick]) -> int:
    """How many ticks started before the previous one (by start) had finished, or at the
    same moment (the same tick run twice)."""
    return sum(
        1
        for before, after in itertools.pairwise(ticks)
        if after.started_at <= before.ended_at or after.started_at == before.started_at
    )


def tasks_done(child: Child) -> Counter[tuple[str, str]]:
    """(task name, task id) -> how many times ``child`` finished it, over all its starts."""
    return Counter(TASK_DONE.findall(child.log(50_000_000)))
