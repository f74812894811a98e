"""Worker killed mid-tick: the executor worker (its whole session, pool children included) is
SIGKILLed while a tick holds the executor lock — half of the kills while the venue is holding
the answer to one of the tick's orders (the order accepted, the answer not back yet), the
others at a random moment of the tick — and started again, over and over.

After every kill: no order the venue accepted twice or unknown to us, the risk state as it was
last committed (sealed, not restored from a snapshot, halts unchanged), a symbol halt (and, on
the last kill, a whole-account halt) set before the kill still in force, and the first tick
within two schedule intervals of the worker being ready again."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from doctor.models import Incident
from risk.models import RiskSnapshot, RiskState
from risk.selectors import row_checksum_ok
from risk.services import risk_halt
from routing.executor import VOL_WINDOW
from routing.models import Instrument, Order, Signal
from routing.orders import PENDING_ABANDONED_AFTER, orders_resolve_unknown
from routing.reconcile import symbol_halt, symbol_halted
from routing.runtime import venue_session
from routing.signal_services import signal_submit
from tests.drills.base import Checks, Verdict, rounded, seconds_text
from tests.drills.executor_checks import (
    EXECUTOR_LOCK,
    bars_seed,
    generous_limits,
    lock_holder_in,
    ticks_between,
    venue_compare,
)
from tests.drills.stack import DrillError, Stack, wait_until
from tradingsite.locks import single_flight, skipped_count
from tradingsite.redisconn import redis_client, redis_key

TRADED = "BTCUSDT"
HALTED = "ETHUSDT"
ORDER_PATH = "/fapi/v1/order"
HELD_ANSWER_SECONDS = 4.0  # the venue holds an order's answer this long (the kill lands inside)
RESUME_TIMEOUT = 120.0
SEED = 20261127


@dataclass
class Kill:
    number: int
    mode: str  # "order" (inside order routing) or "tick" (a random moment of a tick)
    lock_held: bool = False
    killed_at: float = 0.0
    ready_at: float = 0.0
    restart_seconds: float = 0.0
    first_tick_started: float | None = None  # seconds after ready
    first_tick_done: float | None = None  # seconds after ready
    first_tick_after_kill: float | None = None  # seconds after the kill
    lock_left_at_ready: float = 0.0  # seconds the dead run's lock still had to live
    skipped_after_ready: int = 0  # runs skipped for a held lock before the first tick


def _state() -> dict[str, Any]:
    row = RiskState.objects.get()
    return {
        "version": row.version,
        "sealed": row_checksum_ok(row),
        "halted": row.halted,
        "halt_reason": row.halt_reason,
        "size_multiplier": row.size_multiplier,
        "effective_limits": row.effective_limits,
        "nav": row.nav,
        "loss_streak": row.loss_streak,
        "cooldown_until": row.cooldown_until,
    }


def _lock_ttl() -> float:
    return float(redis_client().pttl(redis_key("lock", EXECUTOR_LOCK))) / 1000


def _restores() -> int:
    return RiskSnapshot.objects.filter(reason=RiskSnapshot.Reason.RESTORE).count()


def _order_request_seen(stack: Stack, after: int) -> bool:
    return any(
        record.method == "POST" and record.path == ORDER_PATH and record.fault == "slow"
        for record in stack.binance.requests[after:]
    )


def _kill_mid_order(stack: Stack, kill: Kill, side: str) -> None:
    seen = len(stack.binance.requests)
    stack.binance.faults.push("slow", method="POST", path=ORDER_PATH, delay=HELD_ANSWER_SECONDS)
    signal = signal_submit(symbol=TRADED, side=side, strength=Decimal(1), source="drill")
    try:
        wait_until(
            lambda: _order_request_seen(stack, seen),
            timeout=60,
            interval=0.01,
            what="a tick to send the drill's order",
        )
    except DrillError:
        signal.refresh_from_db()
        raise DrillError(
            f"kill {kill.number}: no order was sent for the drill's signal "
            f"(signal {signal.status}: {signal.risk_reason or '-'})"
        ) from None
    kill.lock_held = lock_holder_in(stack.workers[0])
    stack.workers[0].kill()
    kill.killed_at = time.time()


def _kill_mid_tick(stack: Stack, kill: Kill, rng: random.Random) -> None:
    worker = stack.workers[0]
    while True:
        wait_until(
            lambda: lock_holder_in(worker), timeout=60, interval=0.005, what="a tick to start"
        )
        time.sleep(rng.uniform(0.0, 0.1))
        if lock_holder_in(worker):
            break  # still inside the tick; else it ended in the pause: aim at the next one
    # Whether the tick is still running as it dies (its process holds the lock).
    kill.lock_held = lock_holder_in(worker)
    worker.kill()
    kill.killed_at = time.time()


def _never_sent(stack: Stack, unresolved: list[str]) -> int:
    """Close the intents killed ticks left PENDING as the scheduled reconciliation will once
    they are old enough; how many there were. One the venue accepted would be half-written:
    it is left unresolved, and the drill fails on it."""
    accepted = {order.client_order_id for order in stack.binance.accepted_orders}
    pending = Order.objects.filter(client_order_id__in=unresolved, status=Order.Status.PENDING)
    count = sum(1 for order in pending if order.client_order_id not in accepted)
    if not count:
        return 0

    def resolved() -> bool:
        with single_flight(EXECUTOR_LOCK, ttl_seconds=30) as lock:
            if not lock.acquired:
                return False
            later = timezone.now() + PENDING_ABANDONED_AFTER + timedelta(seconds=1)
            with venue_session() as venue:
                orders_resolve_unknown(venue=venue, clock=lambda: later)
            return True

    wait_until(resolved, timeout=RESUME_TIMEOUT, what="the executor lock between ticks")
    return count


def run(stack: Stack, *, bounded: bool) -> Verdict:
    kills = 3 if bounded else 20
    interval = float(settings.EXECUTOR_INTERVAL_SECONDS)
    rng = random.Random(SEED)
    generous_limits()
    bars_seed(stack.binance, stack.symbols, bars=VOL_WINDOW + 10)
    stack.start_processes()
    wait_until(
        lambda: (
            Instrument.objects.filter(symbol=HALTED).exists()
            and RiskState.objects.exists()
            and ticks_between(datetime.now(UTC) - timedelta(seconds=60))
        ),
        timeout=RESUME_TIMEOUT,
        what="the first ticks",
    )
    symbol_halt(symbol=HALTED, reason="drill: halted before the kills")
    checks = Checks()
    done: list[Kill] = []
    restores_before = _restores()
    restored_incidents_before = Incident.objects.filter(code="state_restored").count()
    for number in range(1, kills + 1):
        kill = Kill(number=number, mode="order" if number % 2 else "tick")
        last = number == kills
        if last:
            risk_halt(reason="drill: halted before the last kill", actor="drill")
            kill.mode = "tick"  # a halted account routes no order
        else:
            # A signal for the halted symbol too: it must be refused after every restart.
            signal_submit(symbol=HALTED, side="BUY", strength=Decimal(1), source="drill")
        if kill.mode == "order":
            _kill_mid_order(stack, kill, "BUY" if number % 4 == 1 else "SELL")
        else:
            _kill_mid_tick(stack, kill, rng)
        # Nothing writes the risk state while the executor worker is down: this is the state
        # the last committed transaction left.
        committed = _state()
        checks.check(committed["sealed"], f"kill {number}: the risk state is not sealed")
        time.sleep(0.5)
        checks.check(
            _state() == committed, f"kill {number}: the risk state changed while no worker ran"
        )
        worker = stack.workers[0].start()
        stack.wait_worker_ready(worker, timeout=RESUME_TIMEOUT)
        kill.ready_at = time.time()
        kill.restart_seconds = kill.ready_at - kill.killed_at
        kill.lock_left_at_ready = max(_lock_ttl(), 0.0)
        skipped_at_ready = skipped_count(EXECUTOR_LOCK)
        ready = datetime.fromtimestamp(kill.ready_at, tz=UTC)
        killed = datetime.fromtimestamp(kill.killed_at, tz=UTC)
        try:
            first = wait_until(
                lambda k=killed: ticks_between(k),  # type: ignore[misc]
                timeout=RESUME_TIMEOUT,
                what=f"a tick after kill {number}",
            )[0]
        except DrillError as error:
            checks.check(False, str(error))
            done.append(kill)
            continue
        kill.skipped_after_ready = skipped_count(EXECUTOR_LOCK) - skipped_at_ready
        kill.first_tick_after_kill = first.ended_at.timestamp() - kill.killed_at
        kill.first_tick_started = first.started_at.timestamp() - ready.timestamp()
        kill.first_tick_done = first.ended_at.timestamp() - ready.timestamp()
        after = _state()
        checks.check(after["sealed"], f"kill {number}: the risk state is not sealed after")
        checks.check(
            after["version"] >= committed["version"],
            f"kill {number}: the risk state went back from v{committed['version']}",
        )
        checks.check(
            (after["halted"], after["halt_reason"])
            == (committed["halted"], committed["halt_reason"]),
            f"kill {number}: the risk halt changed across the kill",
        )
        checks.check(
            symbol_halted(HALTED) != "", f"kill {number}: the {HALTED} halt did not survive"
        )
        if last:
            checks.check(after["halted"], f"kill {number}: the account halt did not survive")
        done.append(kill)
    # Let the last restart's start-up reconciliation settle every order left unknown.
    time.sleep(3 * interval)
    comparison = venue_compare(stack.binance)
    # Intents a killed tick recorded but never sent stay PENDING until reconciliation finds
    # them older than any live tick can be (PENDING_ABANDONED_AFTER): run the product's
    # resolution as the schedule will then, under the executor lock, instead of waiting.
    never_sent = _never_sent(stack, comparison.unresolved)
    comparison = venue_compare(stack.binance)
    halted_orders = Order.objects.filter(symbol=HALTED).count()
    halted_refused = Signal.objects.filter(symbol=HALTED, risk_code="symbol_halted").count()
    mid_tick = sum(1 for kill in done if kill.lock_held)
    restores = _restores() - restores_before
    restored_incidents = (
        Incident.objects.filter(code="state_restored").count() - restored_incidents_before
    )
    checks.check(len(done) == kills, f"only {len(done)} of {kills} kills done")
    checks.check(
        mid_tick == kills, f"only {mid_tick} of {kills} kills landed while a tick held the lock"
    )
    checks.check(comparison.duplicates == 0, f"{comparison.duplicates} duplicate orders")
    checks.check(comparison.sent_twice == 0, f"{comparison.sent_twice} orders routed twice")
    checks.check(
        comparison.unknown_to_us == 0, f"{comparison.unknown_to_us} venue orders unknown to us"
    )
    checks.check(not comparison.unresolved, f"{len(comparison.unresolved)} orders left unresolved")
    checks.check(restores == 0, f"the risk state was restored from a snapshot {restores} times")
    checks.check(halted_orders == 0, f"{halted_orders} orders in the halted {HALTED}")
    started = [k.first_tick_started for k in done if k.first_tick_started is not None]
    finished = [k.first_tick_done for k in done if k.first_tick_done is not None]
    after_kill = [k.first_tick_after_kill for k in done if k.first_tick_after_kill is not None]
    worst_start = max(started) if started else None
    checks.check(
        worst_start is not None and worst_start <= 2 * interval,
        f"the first tick started {seconds_text(worst_start)} after the worker was ready "
        f"(two intervals: {2 * interval:.0f} s)",
    )
    mid_order = sum(1 for kill in done if kill.mode == "order")
    figures = {
        "kills": len(done),
        "kills while a tick held the lock": mid_tick,
        "kills inside order routing": mid_order,
        "orders accepted by the venue": comparison.accepted,
        "duplicate orders": comparison.duplicates,
        "orders routed twice": comparison.sent_twice,
        "venue orders unknown to us": comparison.unknown_to_us,
        "orders left unresolved": len(comparison.unresolved),
        "never-sent intents left by killed ticks (closed by reconciliation)": never_sent,
        "risk state restores": restores,
        "state_restored incidents": restored_incidents,
        f"orders in halted {HALTED}": halted_orders,
        f"{HALTED} signals refused as halted": halted_refused,
        "schedule interval seconds": interval,
        "worst restart seconds (kill to ready)": rounded(
            max((k.restart_seconds for k in done), default=None)
        ),
        "restarts with the dead run's lock still held": sum(
            1 for k in done if k.lock_left_at_ready > 0
        ),
        "most seconds the dead run's lock had left at ready": rounded(
            max((k.lock_left_at_ready for k in done), default=None)
        ),
        "runs skipped for a held lock between ready and the first tick": sum(
            k.skipped_after_ready for k in done
        ),
        "worst seconds from ready to the first tick's start": rounded(worst_start),
        "worst seconds from ready to the first tick's heartbeat": rounded(
            max(finished, default=None)
        ),
        "worst seconds from kill to the first tick's heartbeat": rounded(
            max(after_kill, default=None)
        ),
    }
    summary = (
        f"{len(done)} SIGKILLs mid-tick ({mid_order} inside order routing, {mid_tick} with the "
        f"lock held); {comparison.accepted} venue orders, {comparison.duplicates} duplicates, "
        f"{comparison.unknown_to_us} unknown, {len(comparison.unresolved)} unresolved; risk "
        f"state as committed ({restores} restores), halts kept; first tick "
        f"{seconds_text(worst_start)} after ready at worst (limit {2 * interval:.0f} s), restart "
        f"{seconds_text(figures['worst restart seconds (kill to ready)'])}"
    )
    return checks.verdict("worker_kill", summary, figures, bounded=bounded)
