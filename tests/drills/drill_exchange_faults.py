"""Exchange faults: thousands of orders through the real stack under a randomized fault schedule.

External signals (``signal_submit``, an external source) alternate BUY/SELL over every symbol
of the stack; the executor worker's beat-scheduled ticks size them, check them and route them
to the local Binance test server over python-binance's HTTP stack with the product's
``RetryPolicy`` (real sleeps, Retry-After honoured) while the server fails a share of the order
endpoints' requests: 429 + Retry-After, 418 bans, 5xx, 503 unknown / unavailable / throttled,
-1007, -1021, accepted-then-timeout and accepted-then-reset. Reconciliation runs on its own
schedule. A 418 halts trading until a person lifts the halt: the drill plays that person (it
lifts a ban's halt once the ban's Retry-After has passed) and counts how often it had to.

At the end (no new signals, the backlog routed, the fault storm over, a scheduled
reconciliation finished) every order the venue accepted is compared with the local books:
duplicates (venue orders beyond one per local intent, and venue orders no local row knows) and
lost orders (accepted there but not known here, or intents left unresolved) must be 0, and
every local order's status and filled quantity must match the venue's (100 % reconciled).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db.models import Max, Sum
from django.utils import timezone

from risk.limits import Side
from risk.models import RiskLimit, RiskState
from risk.services import RiskStateConflict, limits_write, risk_unhalt
from routing.binance_testserver import FAULT_KINDS, AcceptedOrder, FaultKind
from routing.models import Instrument, MarketBar, Order, Signal, SignalSource
from routing.orders import STATUS_FROM_VENUE
from routing.signal_services import signal_submit
from routing.venues import ALGO_STATUS, VenueStatus
from tests.drills.base import Checks, Verdict
from tests.drills.common import ticks_running
from tests.drills.stack import DrillError, Stack, wait_until
from tradingsite.metrics import venue_errors_by_code

NAME = "exchange_faults"
SOURCE = "drill-load"
FAULT_RATE = 0.12
FAULT_SEED = 20261127
ORDER_PATHS = frozenset({"/fapi/v1/order", "/fapi/v1/algoOrder"})
# Drawn uniformly from this list: a ban (a halt until the operator lifts it) is rarer than the
# faults the router rides out by itself.
RIDDEN_OUT: tuple[FaultKind, ...] = tuple(kind for kind in FAULT_KINDS if kind != "banned")
FAULT_MIX: tuple[FaultKind, ...] = (*RIDDEN_OUT, *RIDDEN_OUT, *RIDDEN_OUT, "banned")
BACKLOG = 120  # external signals waiting for a tick, at most
ORDER_NOTIONAL = Decimal("200")  # USDT per order (the order limit; the sizer asks for more)
HISTORY_BARS = 90  # closed 1m bars seeded before the stack starts (volatility needs 61)
SETTLE_TIMEOUT = 300.0
RECONCILE_TIMEOUT = 240.0
LIMITS: dict[str, Any] = {
    "max_order_notional": ORDER_NOTIONAL,
    "max_position_notional": Decimal("100000"),
    "max_gross_exposure": Decimal("2000000"),
    "max_leverage": Decimal("5"),
    "max_daily_loss": Decimal("0.5"),
    "max_drawdown": Decimal("0.5"),
    "max_open_orders": 100000,
    "loss_streak_limit": 1000000,
    "loss_streak_cooldown_seconds": 1,
    "min_liquidation_distance": Decimal("0.01"),
}
PLACED_HERE = frozenset(
    {
        Order.Status.OPEN,
        Order.Status.PARTIALLY_FILLED,
        Order.Status.FILLED,
        Order.Status.EXPIRED,
    }
)
UNRESOLVED = frozenset({Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.UNKNOWN})


@dataclass
class Operator:
    """The person on call: lifts a halt the venue caused (ban, repeated failures) once the
    ban's Retry-After has passed. Any other halt is left alone (and fails the drill)."""

    wait_seconds: float
    lifted: int = 0
    other_halts: list[str] = field(default_factory=list)

    def watch(self) -> bool:
        """Lift a venue halt that is due; True (so it can sit in a wait condition)."""
        state = RiskState.objects.values("halted", "halt_reason", "halted_at").first()
        if state is None or not state["halted"]:
            return True
        reason = str(state["halt_reason"])
        if not reason.startswith(("venue ban", "venue failing")):
            if reason not in self.other_halts:
                self.other_halts.append(reason)
            return True
        halted_at = state["halted_at"] or timezone.now()
        if timezone.now() - halted_at < timedelta(seconds=self.wait_seconds):
            return True
        try:
            risk_unhalt(actor="drill-operator", note=f"the venue answers again after: {reason}")
        except RiskStateConflict:
            return True  # lifted meanwhile
        self.lifted += 1
        return True


def _configure(stack: Stack) -> None:
    """Generous limits (the kill switch off), only the drill's signals, and an hour and a half
    of closed bars so the sizer has its volatility from the first tick."""
    limits_write(symbol="", changes=LIMITS, actor="drill", reason="exchange faults drill")
    RiskLimit.objects.filter(symbol="").update(kill_switch=False)
    SignalSource.objects.update(enabled=False)
    rng = random.Random(FAULT_SEED)
    minute = timezone.now().replace(second=0, microsecond=0)
    bars = []
    for symbol in stack.symbols:
        price = stack.binance.price(symbol)
        tick = Decimal("0.1") if symbol == "BTCUSDT" else Decimal("0.01")
        closes = [price]
        for _ in range(HISTORY_BARS - 1):
            move = Decimal(str(rng.gauss(0.0, 0.001)))
            closes.append((closes[-1] * (1 + move)).quantize(tick, rounding=ROUND_HALF_EVEN))
        closes.reverse()  # the newest bar closes at the server's price
        for n, close in enumerate(closes):
            opened = minute - timedelta(minutes=HISTORY_BARS - n)
            bars.append(
                MarketBar(
                    symbol=symbol,
                    interval="1m",
                    open_time=opened,
                    close_time=opened + timedelta(seconds=59, milliseconds=999),
                    open=close,
                    high=close,
                    low=close,
                    close=close,
                    volume=Decimal(0),
                )
            )
    MarketBar.objects.bulk_create(bars)


def _signals_waiting() -> int:
    return Signal.objects.filter(source=SOURCE, status=Signal.Status.NEW).count()


def _signals_in_flight() -> int:
    """Signals waiting for a tick, and those a tick turned into an order not sent yet."""
    pending = Order.objects.filter(status=Order.Status.PENDING, signal__source=SOURCE).count()
    return _signals_waiting() + pending


def _orders() -> int:
    return Order.objects.count()


@dataclass
class Comparison:
    intents: int
    accepted: int
    duplicates: int
    unknown_to_us: int
    lost: list[str]
    mismatched: list[str]
    matched: int

    @property
    def reconciled_percent(self) -> float:
        return 100.0 * self.matched / self.intents if self.intents else 0.0


def compare(stack: Stack) -> Comparison:
    accepted = stack.binance.accepted_orders
    by_id = {o.order_id: o for o in stack.binance.orders}
    algos = {a.algo_id: a for a in stack.binance.algo_orders}
    local = {
        row["client_order_id"]: row
        for row in Order.objects.values(
            "client_order_id", "status", "filled_quantity", "venue_order_id"
        )
    }
    counts = Counter(order.client_order_id for order in accepted)
    duplicates = sum(count - 1 for count in counts.values())
    unknown_to_us = sum(count for cid, count in counts.items() if cid not in local)
    first = {order.client_order_id: order for order in reversed(accepted)}
    lost: list[str] = []
    mismatched: list[str] = []
    matched = 0
    for cid, row in local.items():
        status = row["status"]
        if status in UNRESOLVED:
            lost.append(f"{cid} left {status}")
            continue
        venue = first.get(cid)
        if venue is None:
            if status in PLACED_HERE or row["filled_quantity"] > 0:
                mismatched.append(f"{cid} is {status} here but the venue never accepted it")
            else:
                matched += 1  # rejected or not sent: never reached the venue, nor says so
            continue
        state = _state(venue, by_id, algos)
        if state is None:
            mismatched.append(f"{cid}: the venue has no order {venue.order_id}")
            continue
        want_status, want_filled, want_id = state
        if status in (Order.Status.REJECTED,) or (
            status == Order.Status.CANCELED and not row["venue_order_id"]
        ):
            lost.append(f"{cid} accepted by the venue ({want_status}) but {status} here")
            continue
        if (status, row["filled_quantity"], row["venue_order_id"]) != (
            want_status,
            want_filled,
            want_id,
        ):
            mismatched.append(
                f"{cid}: here {status} {row['filled_quantity']} #{row['venue_order_id']}, "
                f"venue {want_status} {want_filled} #{want_id}"
            )
            continue
        matched += 1
    return Comparison(
        intents=len(local),
        accepted=len(accepted),
        duplicates=duplicates,
        unknown_to_us=unknown_to_us,
        lost=lost,
        mismatched=mismatched,
        matched=matched,
    )


def _state(
    accepted: AcceptedOrder, by_id: dict[int, Any], algos: dict[int, Any]
) -> tuple[str, Decimal, str] | None:
    if accepted.kind == "order":
        found = by_id.get(accepted.order_id)
        if found is None:
            return None
        return (
            str(STATUS_FROM_VENUE[VenueStatus(found.status)]),
            found.executed_qty,
            str(found.order_id),
        )
    algo = algos.get(accepted.order_id)
    if algo is None:
        return None
    if algo.status in ALGO_STATUS or algo.actual_order_id is None:
        status = STATUS_FROM_VENUE[ALGO_STATUS.get(algo.status, VenueStatus.EXPIRED)]
        return str(status), Decimal(0), str(algo.algo_id)
    placed = by_id.get(algo.actual_order_id)
    if placed is None:
        return None
    return (
        str(STATUS_FROM_VENUE[VenueStatus(placed.status)]),
        placed.executed_qty,
        str(placed.order_id),
    )


def _log_lines_after(stack: Stack, moment: float) -> list[str]:
    """The workers' log lines stamped after ``moment`` (Celery stamps them in local time)."""
    found = []
    for worker in stack.workers:
        for line in worker.log(50_000_000).splitlines():
            try:
                at = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").astimezone(UTC)
            except ValueError:
                continue
            if at.timestamp() > moment:
                found.append(line)
    return found


def _reconciled_after(stack: Stack, moment: float) -> bool:
    """A scheduled reconciliation finished after ``moment`` (the worker logs each run)."""
    return any("reconciliation done" in line for line in _log_lines_after(stack, moment))


def _worker_log_counts(stack: Stack, calm: float) -> dict[str, int]:
    """What the executor worker logged: ticks and reconciliations that found the lock held,
    ticks that lost it while working (all of the run), reconciliations skipped after the storm."""
    lines = _log_lines_after(stack, 0.0)
    after = _log_lines_after(stack, calm)
    return {
        "ticks skipped (executor lock held)": sum("executor tick skipped" in x for x in lines),
        "ticks that lost the executor lock": sum(
            "executor_tick_task" in x and "LockNotOwnedError" in x for x in lines
        ),
        "reconciliations skipped (lock held)": sum("reconciliation skipped" in x for x in lines),
        "scheduled reconciliations after the storm": sum("reconciliation done" in x for x in after),
        "scheduled reconciliations skipped after the storm": sum(
            "reconciliation skipped" in x for x in after
        ),
    }


def run(stack: Stack, *, bounded: bool) -> Verdict:
    target = 1_000 if bounded else 10_000
    checks = Checks()
    _configure(stack)
    stack.binance.start_price_walk(interval=1.0, volatility=Decimal("0.0003"))
    stack.binance.faults.random(FAULT_RATE, kinds=FAULT_MIX, seed=FAULT_SEED, paths=ORDER_PATHS)
    stack.start_processes()
    ticks_running(count=2, timeout=180)
    operator = Operator(wait_seconds=float(stack.binance.retry_after))
    symbols = list(stack.symbols)
    sides = dict.fromkeys(symbols, Side.BUY)
    submitted = 0
    started = time.monotonic()
    first_order_at: float | None = None
    last_progress = (time.monotonic(), 0)
    # Load: keep the backlog of waiting signals topped up until enough orders exist.
    while True:
        operator.watch()
        orders = _orders()
        now = time.monotonic()
        if first_order_at is None and orders:
            first_order_at = now
        if orders >= target:
            break
        if orders > last_progress[1]:
            last_progress = (now, orders)
        elif now - last_progress[0] > SETTLE_TIMEOUT:
            checks.check(
                False,
                f"no new order for {SETTLE_TIMEOUT:.0f} s at {orders} orders "
                f"({_signals_in_flight()} signals in flight)",
            )
            break
        stack.assert_running()
        room = min(BACKLOG - _signals_waiting(), target - orders - _signals_in_flight())
        for n in range(max(room, 0)):
            symbol = symbols[(submitted + n) % len(symbols)]
            signal_submit(symbol=symbol, side=sides[symbol], strength="1", source=SOURCE)
            sides[symbol] = Side.SELL if sides[symbol] == Side.BUY else Side.BUY
        submitted += max(room, 0)
        time.sleep(0.5)
    load_seconds = time.monotonic() - (first_order_at or started)
    # Drain: every submitted signal acted on, then the storm ends.
    try:
        wait_until(
            lambda: operator.watch() and _signals_in_flight() == 0,
            timeout=SETTLE_TIMEOUT,
            what="the last signals to be routed",
            interval=0.5,
        )
    except DrillError as error:
        checks.check(False, str(error))
    injected = Counter(kind for _, _, kind in stack.binance.faults.injected)
    stack.binance.faults.clear()
    calm = time.time()
    # The product's own reconciliation (beat, every minute) settles what the storm left.
    reconcile_wait = time.monotonic()
    try:
        wait_until(
            lambda: operator.watch() and _reconciled_after(stack, calm + 1),
            timeout=RECONCILE_TIMEOUT,
            what="a scheduled reconciliation after the storm",
            interval=1.0,
        )
        scheduled = True
    except DrillError as error:
        checks.check(False, str(error))
        scheduled = False
    reconcile_seconds = time.monotonic() - reconcile_wait
    operator.watch()
    result = compare(stack)
    statuses = Counter(Order.objects.values_list("status", flat=True))
    purposes = Counter(Order.objects.values_list("purpose", flat=True))
    attempts = Order.objects.aggregate(total=Sum("attempts"), most=Max("attempts"))
    order_requests = [
        r for r in stack.binance.requests if r.method == "POST" and r.path in ORDER_PATHS
    ]
    errors = venue_errors_by_code()
    halted_symbols = list(
        Instrument.objects.filter(trading_halted=True).values_list("symbol", flat=True)
    )
    orders_per_second = result.intents / load_seconds if load_seconds else 0.0
    checks.check(result.intents >= target, f"only {result.intents} orders (< {target})")
    checks.check(result.duplicates == 0, f"{result.duplicates} duplicate venue orders")
    checks.check(
        result.unknown_to_us == 0, f"{result.unknown_to_us} venue orders no local row knows"
    )
    checks.check(not result.lost, f"{len(result.lost)} lost: {result.lost[:3]}")
    checks.check(
        not result.mismatched,
        f"{len(result.mismatched)} not reconciled: {result.mismatched[:3]}",
    )
    checks.check(not operator.other_halts, f"trading halted: {operator.other_halts[:2]}")
    checks.check(not halted_symbols, f"symbols halted by reconciliation: {halted_symbols}")
    for kind in ("banned", "rate_limited", "accepted_then_timeout", "accepted_then_reset"):
        checks.check(injected[kind] > 0, f"no {kind} fault was injected")
    figures: dict[str, Any] = {
        "orders (local intents)": result.intents,
        "orders by purpose": dict(purposes),
        "orders by status": dict(statuses),
        "venue-accepted orders": result.accepted,
        "duplicates": result.duplicates + result.unknown_to_us,
        "lost": len(result.lost),
        "reconciled percent": round(result.reconciled_percent, 2),
        "faults injected": sum(injected.values()),
        "faults by kind": dict(sorted(injected.items())),
        "fault rate on order endpoints": FAULT_RATE,
        "order requests sent": len(order_requests),
        "resends (requests beyond one per order sent)": len(order_requests)
        - len(
            {
                r.params.get("newClientOrderId") or r.params.get("clientAlgoId")
                for r in order_requests
            }
        ),
        "orders sent more than once": Order.objects.filter(attempts__gt=1).count(),
        "submissions": attempts["total"],
        "most submissions of one order": attempts["most"],
        "venue errors counted by code": errors,
        "venue errors retried or resolved": sum(errors.values()),
        "ban halts lifted by the operator": operator.lifted,
        "load seconds": round(load_seconds, 1),
        "orders per second": round(orders_per_second, 2),
        "scheduled reconciliation seconds after the storm": (
            round(reconcile_seconds, 1) if scheduled else None
        ),
        "symbols": len(stack.symbols),
        **_worker_log_counts(stack, calm),
    }
    summary = (
        f"{result.intents} orders over {len(stack.symbols)} symbols at "
        f"{orders_per_second:.1f}/s under {sum(injected.values())} faults "
        f"({injected['banned']} bans, {injected['rate_limited']} 429s, "
        f"{injected['accepted_then_timeout'] + injected['accepted_then_reset']} accepted-then-"
        f"lost answers); venue accepted {result.accepted}; duplicates "
        f"{result.duplicates + result.unknown_to_us}, lost {len(result.lost)}, reconciled "
        f"{result.reconciled_percent:.1f} %; {operator.lifted} ban halt(s) lifted by the operator"
    )
    return checks.verdict(NAME, summary, figures, bounded=bounded)
