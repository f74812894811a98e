"""Reconciliation: the local books against the venue's, repaired where they differ.

It runs at start-up and every minute (``routing.tasks.reconcile_task``) under the executor's
single-flight lock, so it never runs beside a tick. In order:

1. Orders whose outcome is unknown are resolved by client order id (``orders_resolve_unknown``).
2. The venue's open orders. One of ours (its client order id is in ``Order`` with the same
   venue order id: Binance accepts a client id again once its order is final, so the id alone
   proves nothing) has its state adopted. **Any other is cancelled** - the rule: an order this
   system did not decide is never left working on the account, since it could open a position
   no risk check saw (trade by hand on another sub-account). An order of ours that is final
   here but still working there is cancelled too: its decision is over.
3. Local open orders the venue no longer lists are queried by client order id and their final
   state (filled, cancelled, expired) adopted; one the venue has never heard of is closed here.
4. Missing fills are recorded with ``fills_record`` - including the older trades of an order
   adopted late, which its usual cursor (the newest recorded fill) would skip.
5. Positions are compared with the venue's. A difference opens the incident
   ``reconcile/position_<SYMBOL>`` or counts another occurrence of it; when one symbol differs
   on ``persist_after`` consecutive runs it is halted (fail closed). The incident's occurrence
   count is that counter: it lives in the database beside the halt it leads to, so a Redis
   restart cannot reset it, and the doctor shows it. Agreement resolves the incident, which
   restarts the count, but never lifts a halt: a person does (``symbol_unhalt``).
6. The venue's wallet is compared with the last NAV point's wallet moved by the fills, cash
   flows and funding payments booked since. Only a difference beyond a tolerance (rounding,
   income not booked yet) is an incident, and it never halts anything.

Every repair is logged; every difference is also in the report and an incident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.db.models import DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from doctor.models import Incident
from doctor.services import incident_open, incident_resolve
from routing.books import fills_record
from routing.models import CashFlow, Fill, FundingPayment, Instrument, NavPoint, Order, Position
from routing.orders import STATUS_FROM_VENUE, orders_resolve_unknown, venue_incidents_resolve
from routing.resilience import OrderNotFound, VenueCallError
from routing.venues import Venue, VenueOrderState, VenueTrade

logger = logging.getLogger(__name__)

COMPONENT = "reconcile"
# Orders that may be working on the venue as far as the books know.
ACTIVE_HERE = frozenset(
    {
        Order.Status.PENDING,
        Order.Status.SUBMITTING,
        Order.Status.UNKNOWN,
        Order.Status.OPEN,
        Order.Status.PARTIALLY_FILLED,
    }
)
OPEN_HERE = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
BALANCE_TOLERANCE_USDT = Decimal("1")
BALANCE_TOLERANCE_FRACTION = Decimal("0.001")  # of the wallet: funding, rounding
# Trades are asked for from a little before the adopted order was sent: the two clocks differ.
CLOCK_MARGIN = timedelta(minutes=1)
# Differences about one order or one event, resolved by the first run that no longer finds
# them; positions, the balance and unknown orders are resolved where they are compared.
ONE_OFF_CODES = frozenset(
    {
        "cancel_failed",
        "order_stale",
        "foreign_order",
        "order_missing",
        "order_unchecked",
        "order_adopted",
        "fills_missing",
    }
)

Clock = Callable[[], datetime]


@dataclass
class ReconcileReport:
    unknown_resolved: int = 0  # unknown outcomes the venue answered
    unknown_not_placed: int = 0  # unknown outcomes the venue never saw (closed here)
    unknown_remaining: int = 0  # still without an answer
    orders_adopted: int = 0  # local orders given the venue's (newer) state
    orders_canceled: int = 0  # venue orders cancelled by the rule above
    fills_recorded: int = 0
    position_differences: int = 0
    symbols_halted: list[str] = field(default_factory=list)  # halted by this run
    balance_difference: str = ""  # venue - expected, when beyond the tolerance
    differences: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


# --- the per-symbol halt -------------------------------------------------------------------


def symbol_halted(symbol: str) -> str:
    """Why ``symbol`` may not be traded ("" if it may)."""
    row = (
        Instrument.objects.filter(symbol=symbol, trading_halted=True)
        .values_list("halt_reason", flat=True)
        .first()
    )
    if row is None:
        return ""
    return row or "halted"


def symbol_halt(*, symbol: str, reason: str, at: datetime | None = None) -> bool:
    """Halt trading in ``symbol`` (fail closed); False if it has no instrument row (then it is
    not traded here) or was halted already (the first reason is kept)."""
    halted = Instrument.objects.filter(symbol=symbol, trading_halted=False).update(
        trading_halted=True, halt_reason=reason, updated_at=at or timezone.now()
    )
    if halted:
        logger.error("trading in %s halted: %s", symbol, reason)
        incident_open(
            component=COMPONENT,
            code=f"halted_{symbol}",
            severity=Incident.Severity.CRITICAL,
            message=f"trading in {symbol} is halted until a person lifts it: {reason}",
            context={"symbol": symbol},
            at=at,
        )
    return bool(halted)


def symbol_unhalt(*, symbol: str, actor: str, note: str) -> Instrument:
    """Lift the halt on ``symbol``. If its difference is still there, the next reconciliation
    halts it again: fix the books (or the venue) first."""
    instrument = Instrument.objects.get(symbol=symbol)
    reason = instrument.halt_reason
    Instrument.objects.filter(pk=instrument.pk).update(
        trading_halted=False, halt_reason="", updated_at=timezone.now()
    )
    instrument.refresh_from_db()
    code = f"halted_{symbol}"
    Incident.objects.filter(component=COMPONENT, code=code, resolved_at__isnull=True).update(
        context={"symbol": symbol, "lifted_by": actor, "note": note, "reason": reason}
    )
    incident_resolve(component=COMPONENT, code=code)
    logger.warning(
        "trading in %s resumed by %s (%s); it was halted: %s", symbol, actor, note, reason
    )
    return instrument


# --- reconciliation ------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    """0E-8 as 0, 0.010 as 0.01: database decimals carry their scale."""
    return format(value.normalize(), "f")


class _TradesFrom:
    """The venue, with ``trades`` asked from ``since_ms`` at the latest."""

    def __init__(self, venue: Venue, since_ms: int) -> None:
        self._venue = venue
        self._since_ms = since_ms

    def trades(self, *, symbol: str, since_ms: int) -> list[VenueTrade]:
        return self._venue.trades(symbol=symbol, since_ms=min(since_ms, self._since_ms))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)


class _Run:
    def __init__(self, venue: Venue, clock: Clock, report: ReconcileReport) -> None:
        self.venue = venue
        self.clock = clock
        self.report = report
        self.touched: set[int] = set()  # orders whose state changed in this run
        self.codes: set[str] = set()  # incident codes reported by this run

    def difference(
        self,
        code: str,
        message: str,
        *,
        severity: Incident.Severity = Incident.Severity.WARNING,
        **context: object,
    ) -> None:
        logger.warning("reconciliation: %s", message)
        self.report.differences.append(message)
        self.codes.add(code)
        incident_open(
            component=COMPONENT,
            code=code,
            severity=severity,
            message=message,
            context={k: str(v) for k, v in context.items()},
            at=self.clock(),
        )

    def adopt(self, order: Order, state: VenueOrderState) -> bool:
        """Give ``order`` the venue's state; False when it had it already."""
        fields = {
            "status": STATUS_FROM_VENUE[state.status],
            "venue_order_id": state.venue_order_id,
            "filled_quantity": state.executed_quantity,
        }
        if all(getattr(order, name) == value for name, value in fields.items()):
            return False
        now = self.clock()
        fields["acked_at"] = order.acked_at or now
        fields["updated_at"] = now
        Order.objects.filter(pk=order.pk).update(**fields)
        for name, value in fields.items():
            setattr(order, name, value)
        self.touched.add(order.pk)
        self.report.orders_adopted += 1
        logger.info(
            "reconciliation: order %s adopted the venue's state %s (filled %s)",
            order.client_order_id,
            state.status,
            state.executed_quantity,
        )
        return True

    def cancel(self, state: VenueOrderState) -> VenueOrderState | None:
        try:
            closed = self.venue.cancel(symbol=state.symbol, client_order_id=state.client_order_id)
        except VenueCallError as error:
            self.difference(
                "cancel_failed",
                f"could not cancel venue order {state.client_order_id} ({state.symbol}): {error}",
                client_order_id=state.client_order_id,
            )
            return None
        self.report.orders_canceled += 1
        return closed


def _resolve_unknown(run: _Run) -> None:
    pending = set(
        Order.objects.filter(
            status__in=[Order.Status.SUBMITTING, Order.Status.UNKNOWN]
        ).values_list("pk", flat=True)
    )
    counts = orders_resolve_unknown(venue=run.venue, clock=run.clock)
    run.touched |= pending
    run.report.unknown_resolved = counts["adopted"]
    run.report.unknown_not_placed = counts["not_placed"]
    if counts["adopted"] or counts["not_placed"]:
        logger.info(
            "reconciliation: %d unknown order(s) resolved, %d never reached the venue",
            counts["adopted"],
            counts["not_placed"],
        )


def _venue_open_orders(run: _Run) -> set[tuple[str, str]]:
    """Adopt our venue open orders, cancel the others; return the (client id, venue id) pairs
    still working on the venue that are ours."""
    listed = run.venue.open_orders()
    local = {
        order.client_order_id: order
        for order in Order.objects.filter(
            client_order_id__in=[state.client_order_id for state in listed]
        )
    }
    working: set[tuple[str, str]] = set()
    for state in listed:
        order = local.get(state.client_order_id)
        ours = order is not None and order.venue_order_id in ("", state.venue_order_id)
        if order is not None and ours and order.status in ACTIVE_HERE:
            run.adopt(order, state)
            working.add((state.client_order_id, state.venue_order_id))
            continue
        if order is not None and ours:
            closed = run.cancel(state)
            run.difference(
                "order_stale",
                f"order {state.client_order_id} ({state.symbol}) is {order.status} here but "
                f"was working on the venue: cancelled",
                client_order_id=state.client_order_id,
            )
            if closed is not None:
                run.adopt(order, closed)
            continue
        closed = run.cancel(state)
        outcome = "cancelled" if closed is not None else "NOT cancelled"
        run.difference(
            "foreign_order",
            f"venue order {state.client_order_id} ({state.symbol}, venue id "
            f"{state.venue_order_id}) was not placed by this system: {outcome}",
            client_order_id=state.client_order_id,
            venue_order_id=state.venue_order_id,
            symbol=state.symbol,
        )
    return working


def _local_open_orders(run: _Run, working: set[tuple[str, str]]) -> None:
    """Local open orders the venue no longer lists: adopt their final state."""
    for order in Order.objects.filter(status__in=OPEN_HERE).order_by("id"):
        if (order.client_order_id, order.venue_order_id) in working:
            continue
        try:
            state = run.venue.query(symbol=order.symbol, client_order_id=order.client_order_id)
        except OrderNotFound:
            Order.objects.filter(pk=order.pk).update(
                status=Order.Status.CANCELED,
                last_error="open here, but the venue has no such order (reconciliation)",
                updated_at=run.clock(),
            )
            run.touched.add(order.pk)
            run.difference(
                "order_missing",
                f"order {order.client_order_id} ({order.symbol}) was open here but the venue "
                "has no such order: closed here",
                client_order_id=order.client_order_id,
            )
            continue
        except VenueCallError as error:
            run.difference(
                "order_unchecked",
                f"order {order.client_order_id} ({order.symbol}) could not be checked: {error}",
                client_order_id=order.client_order_id,
            )
            continue
        # Binance accepts a client id again once its order is final, so the answer may be about
        # someone else's order. Not for a stop: its venue id changes when it triggers (the algo
        # id, then the id of the order it placed).
        regular = order.type in (Order.Type.MARKET, Order.Type.LIMIT)
        if regular and order.venue_order_id and state.venue_order_id != order.venue_order_id:
            run.difference(
                "order_unchecked",
                f"order {order.client_order_id} ({order.symbol}): the venue answers for another "
                f"order with this client id (venue id {state.venue_order_id}, ours "
                f"{order.venue_order_id})",
                client_order_id=order.client_order_id,
            )
            continue
        if run.adopt(order, state):
            run.difference(
                "order_adopted",
                f"order {order.client_order_id} ({order.symbol}) was open here; the venue says "
                f"{state.status} (filled {state.executed_quantity}): adopted",
                severity=Incident.Severity.INFO,
                client_order_id=order.client_order_id,
            )


def _missing_fills(touched: Iterable[int]) -> list[Order]:
    """Orders whose venue-reported filled quantity is more than their recorded fills."""
    recorded = Coalesce(Sum("fills__quantity"), Value(Decimal(0)), output_field=DecimalField())
    return list(
        Order.objects.filter(pk__in=list(touched), filled_quantity__gt=0)
        .annotate(recorded=recorded)
        .filter(filled_quantity__gt=F("recorded"))
        .order_by("id")
    )


def _record_fills(run: _Run, symbols: Iterable[str]) -> None:
    late = _missing_fills(run.touched)
    since: dict[str, datetime] = {}
    for order in late:
        sent = order.submitted_at or order.decided_at
        since[order.symbol] = min(since.get(order.symbol, sent), sent)
    for symbol in sorted(set(symbols) | set(since)):
        venue = run.venue
        if symbol in since:
            # The usual cursor is the newest recorded fill: an order adopted late may have
            # traded before it. Trade ids are unique, so asking from further back is safe.
            from_ms = int((since[symbol] - CLOCK_MARGIN).timestamp() * 1000)
            venue = cast(Venue, _TradesFrom(run.venue, from_ms))
        recorded = fills_record(venue=venue, symbol=symbol)
        run.report.fills_recorded += len(recorded)
        if recorded:
            logger.info("reconciliation: %d fill(s) of %s recorded", len(recorded), symbol)
    for order in _missing_fills(order.pk for order in late):
        run.difference(
            "fills_missing",
            f"order {order.client_order_id} ({order.symbol}) filled {order.filled_quantity} "
            "on the venue, but not all its trades were found",
            client_order_id=order.client_order_id,
        )


def _positions(run: _Run, symbols: Iterable[str], persist_after: int) -> None:
    theirs = run.venue.positions()
    ours = dict(Position.objects.values_list("symbol", "quantity"))
    checked = set(symbols) | set(theirs) | {s for s, q in ours.items() if q != 0}
    for symbol in sorted(checked):
        local = ours.get(symbol, Decimal(0))
        venue = theirs.get(symbol, Decimal(0))
        code = f"position_{symbol}"
        if local == venue:
            if incident_resolve(component=COMPONENT, code=code, at=run.clock()):
                logger.info("reconciliation: %s position agrees with the venue again", symbol)
            continue
        run.report.position_differences += 1
        message = f"{symbol} position is {_plain(local)} here but {_plain(venue)} on the venue"
        logger.warning("reconciliation: %s", message)
        run.report.differences.append(message)
        incident = incident_open(
            component=COMPONENT,
            code=code,
            severity=Incident.Severity.WARNING,
            message=message,
            context={"symbol": symbol, "local": str(local), "venue": str(venue)},
            at=run.clock(),
        )
        if incident.occurrences >= persist_after:
            reason = f"{message}, on {incident.occurrences} consecutive reconciliations"
            if symbol_halt(symbol=symbol, reason=reason, at=run.clock()):
                run.report.symbols_halted.append(symbol)
            elif not symbol_halted(symbol):
                logger.error("%s cannot be halted: no instrument row (not traded here)", symbol)


def _balance(run: _Run) -> None:
    last = NavPoint.objects.order_by("-at", "-id").first()
    if last is None:
        return
    wallet = run.venue.wallet_balance()
    zero = Value(Decimal(0), output_field=DecimalField())
    moved = Fill.objects.filter(filled_at__gt=last.at).aggregate(
        pnl=Coalesce(Sum("realized_pnl"), zero), fees=Coalesce(Sum("fee"), zero)
    )
    flows = CashFlow.objects.filter(at__gt=last.at).aggregate(total=Coalesce(Sum("amount"), zero))
    funding = FundingPayment.objects.filter(at__gt=last.at).aggregate(
        total=Coalesce(Sum("amount"), zero)
    )
    expected = last.wallet + moved["pnl"] - moved["fees"] + flows["total"] + funding["total"]
    difference = wallet - expected
    tolerance = max(BALANCE_TOLERANCE_USDT, BALANCE_TOLERANCE_FRACTION * abs(expected))
    if abs(difference) <= tolerance:
        incident_resolve(component=COMPONENT, code="balance", at=run.clock())
        return
    run.report.balance_difference = _plain(difference)
    run.difference(
        "balance",
        f"wallet is {_plain(wallet)} on the venue, {_plain(expected)} expected from the books "
        f"(difference {_plain(difference)}, tolerance {_plain(tolerance)})",
        wallet=wallet,
        expected=expected,
    )


def _one_off_differences_resolve(run: _Run) -> None:
    """A run that no longer finds a one-off difference (a foreign order, a missing fill...)
    resolves its incident, so the next such difference opens (and alerts) again."""
    gone = Incident.objects.filter(
        component=COMPONENT, code__in=ONE_OFF_CODES - run.codes, resolved_at__isnull=True
    ).values_list("code", flat=True)
    for code in sorted(gone):
        incident_resolve(component=COMPONENT, code=code, at=run.clock())


def reconcile(
    *,
    venue: Venue,
    symbols: Iterable[str],
    persist_after: int = 2,
    clock: Clock = timezone.now,
    renew: Callable[[], None] = lambda: None,
) -> ReconcileReport:
    """Compare the books with ``venue`` and repair them (see the module's docstring).

    Call it under the executor's single-flight lock; ``renew`` keeps that lock between steps.
    A venue call that fails for the whole account (open orders, positions, balance) raises:
    the next run tries again.
    """
    if persist_after < 1:
        raise ValueError("persist_after must be at least 1")
    symbols = tuple(symbols)
    run = _Run(venue, clock, ReconcileReport())
    _resolve_unknown(run)
    renew()
    working = _venue_open_orders(run)
    renew()
    _local_open_orders(run, working)
    renew()
    _record_fills(run, symbols)
    remaining = Order.objects.filter(
        status__in=[Order.Status.SUBMITTING, Order.Status.UNKNOWN]
    ).count()
    run.report.unknown_remaining = remaining
    if remaining:
        run.difference("orders_unknown", f"{remaining} order(s) still of unknown outcome")
    else:
        incident_resolve(component=COMPONENT, code="orders_unknown", at=clock())
    renew()
    _positions(run, symbols, persist_after)
    _balance(run)
    _one_off_differences_resolve(run)
    # Every account-wide venue call of this run was answered: a ban or failure is over.
    venue_incidents_resolve(at=clock())
    logger.info(
        "reconciliation done: %d difference(s), %d order(s) adopted, %d cancelled, "
        "%d fill(s) recorded",
        len(run.report.differences),
        run.report.orders_adopted,
        run.report.orders_canceled,
        run.report.fills_recorded,
    )
    return run.report
