"""Protective stops, cancelling entries on halt, and flatten (SPEC §6).

Every open position carries one reduce-only STOP_MARKET order on the venue for its whole size,
on the exit side, at a configured distance from the entry price, so the account is protected
while this system is down. ``stops_maintain`` keeps it so: it places the stop, moves it when
the position changes (size, side or entry price), cancels it when the symbol is flat, and
replaces one that vanished on the venue. Stops go through ``order_create`` + ``order_send`` like
every order (client id stored first, exactly-once submission, reduce-only passes a halt).

A stop whose state is not known (an unknown outcome the venue could not resolve yet) is never
doubled: the symbol is left alone until the venue answers. A stop that has just executed is not
replaced in the same run: the position it closed only moves when its fills are recorded.

The replacement is placed before the old stop is cancelled: for a moment two reduce-only stops
rest (together they can only close the position, never flip it), instead of a moment with none
- and a new stop the venue refuses leaves the old one working.

Recommended order in the tick: route -> ``stops_refresh`` -> fills -> ``stops_maintain``: a
stop that fired since the last tick gets the id of the order it placed before the fills step
attributes that order's trades, and the new stop sees the position after this tick's fills.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum

from django.utils import timezone

from risk.limits import Side
from routing.filters import SymbolFilters
from routing.models import Instrument, Order, Position
from routing.orders import STATUS_FROM_VENUE, order_create, order_send
from routing.resilience import OrderNotFound, VenueCallError, VenueRejected
from routing.venues import Venue, VenueOrderState

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

ON_VENUE = frozenset({Order.Status.OPEN, Order.Status.PARTIALLY_FILLED})
UNSETTLED = frozenset({Order.Status.SUBMITTING, Order.Status.UNKNOWN})
CANCELLABLE_PURPOSES = (Order.Purpose.ENTRY, Order.Purpose.EXIT)


class StopState(StrEnum):
    """What a local stop is on the venue after a refresh."""

    WORKING = "working"  # resting, nothing executed
    EXECUTED = "executed"  # triggered: (part of) it executed
    GONE = "gone"  # cancelled, expired, rejected or never placed, nothing executed
    UNKNOWN = "unknown"  # the venue could not say


@dataclass(frozen=True)
class WantedStop:
    side: Side
    quantity: Decimal
    stop_price: Decimal


# --- rounding ---------------------------------------------------------------------------------


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    with localcontext() as context:
        context.prec = 60  # wide enough that value / step is exact before it is rounded
        steps = (value / step).to_integral_value(rounding=rounding)
        exponent = min(int(step.normalize().as_tuple().exponent), 0)
        return (steps * step).quantize(Decimal(1).scaleb(exponent))


def stop_wanted(
    *, quantity: Decimal, entry_price: Decimal, distance: Decimal, filters: SymbolFilters
) -> WantedStop | None:
    """The stop a position of signed ``quantity`` at ``entry_price`` needs (None when flat).

    Long: sell at entry x (1 - distance); short: buy at entry x (1 + distance). The trigger is
    rounded to the tick towards the entry, so the loss it allows never exceeds the configured
    distance; the quantity is the whole position, rounded down to the market step.
    """
    if quantity == 0:
        return None
    size = _to_step(abs(quantity), filters.market_step_size, ROUND_FLOOR)
    if size <= 0:
        return None
    if quantity > 0:
        price = _to_step(entry_price * (1 - distance), filters.tick_size, ROUND_CEILING)
        side = Side.SELL
    else:
        price = _to_step(entry_price * (1 + distance), filters.tick_size, ROUND_FLOOR)
        side = Side.BUY
    if price <= 0:
        return None
    return WantedStop(side=side, quantity=size, stop_price=price)


class _Filters:
    """Each symbol's filters: the Instrument row, else exchangeInfo (asked at most once)."""

    def __init__(self, venue: Venue) -> None:
        self._venue = venue
        self._from_venue: dict[str, SymbolFilters] | None = None

    def __call__(self, symbol: str) -> SymbolFilters:
        row = Instrument.objects.filter(symbol=symbol).first()
        if row is not None:
            return row.as_filters()
        if self._from_venue is None:
            self._from_venue = self._venue.exchange_filters()
        return self._from_venue[symbol]


# --- recording venue answers ------------------------------------------------------------------


def _state_applied(order: Order, state: VenueOrderState, *, at: datetime) -> None:
    fields = {
        "status": STATUS_FROM_VENUE[state.status],
        "venue_order_id": state.venue_order_id,
        "filled_quantity": state.executed_quantity,
        "acked_at": order.acked_at or at,
    }
    for name, value in fields.items():
        setattr(order, name, value)
    Order.objects.filter(pk=order.pk).update(**fields)


def _marked(order: Order, status: Order.Status, reason: str) -> None:
    order.status, order.last_error = status, reason
    Order.objects.filter(pk=order.pk).update(status=status, last_error=reason)


def _refreshed(order: Order, *, venue: Venue, clock: Clock) -> bool:
    """Ask the venue for ``order`` and record its answer; False when it could not say."""
    if order.status == Order.Status.PENDING:
        # Created but never sent (order_send marks SUBMITTING before any request).
        _marked(order, Order.Status.CANCELED, "not sent: superseded")
        return True
    try:
        state = venue.query(symbol=order.symbol, client_order_id=order.client_order_id)
    except OrderNotFound:
        # -2013 on every service: it is not (or no longer) on the venue.
        _marked(order, Order.Status.CANCELED, "the venue does not know this order")
        return True
    except VenueCallError as error:
        logger.warning("%s %s: status query failed: %s", order.symbol, order, error)
        return False
    _state_applied(order, state, at=clock())
    return True


def _cancelled(order: Order, *, venue: Venue, clock: Clock) -> bool:
    """Cancel ``order`` on the venue and record its final state; False when that is unknown.

    A refused cancel (-2011: it filled or was cancelled meanwhile) is answered by a query.
    """
    if order.status == Order.Status.PENDING:
        _marked(order, Order.Status.CANCELED, "not sent: cancelled before sending")
        return True
    try:
        state = venue.cancel(symbol=order.symbol, client_order_id=order.client_order_id)
    except VenueRejected:
        return _refreshed(order, venue=venue, clock=clock)
    except VenueCallError as error:
        logger.warning("%s %s: cancel failed: %s", order.symbol, order, error)
        return False
    _state_applied(order, state, at=clock())
    return True


def _stop_state(order: Order, known: bool) -> StopState:
    if not known or order.status in UNSETTLED:
        return StopState.UNKNOWN
    if order.filled_quantity > 0:
        return StopState.EXECUTED
    if order.status in ON_VENUE:
        return StopState.WORKING
    return StopState.GONE


def _live_stops(symbol: str) -> list[Order]:
    return list(
        Order.objects.filter(symbol=symbol, purpose=Order.Purpose.STOP)
        .exclude(status__in=Order.FINAL)
        .order_by("id")
    )


# --- stops ------------------------------------------------------------------------------------


def stops_refresh(
    *, venue: Venue, symbols: Iterable[str], clock: Clock = timezone.now
) -> dict[str, list[StopState]]:
    """Record the venue's state of every stop not known to be final, per symbol."""
    states: dict[str, list[StopState]] = {}
    for symbol in symbols:
        states[symbol] = [
            _stop_state(stop, _refreshed(stop, venue=venue, clock=clock))
            for stop in _live_stops(symbol)
        ]
    return states


def stops_maintain(
    *,
    venue: Venue,
    symbols: Iterable[str],
    distance: Decimal,
    clock: Clock = timezone.now,
) -> list[Order]:
    """Give each non-flat local position exactly one working stop at ``distance`` (a fraction
    of the entry price, e.g. 0.05) and flat symbols none. Returns the stops placed."""
    if not distance.is_finite() or not 0 < distance < 1:
        raise ValueError(f"the stop distance must be a fraction in (0, 1), got {distance}")
    filters = _Filters(venue)
    placed: list[Order] = []
    for symbol in symbols:
        stop = _symbol_stop_maintained(
            symbol, venue=venue, distance=distance, filters=filters, clock=clock
        )
        if stop is not None:
            placed.append(stop)
    return placed


def _symbol_stop_maintained(
    symbol: str, *, venue: Venue, distance: Decimal, filters: _Filters, clock: Clock
) -> Order | None:
    stops = _live_stops(symbol)
    states = [_stop_state(stop, _refreshed(stop, venue=venue, clock=clock)) for stop in stops]
    if StopState.UNKNOWN in states:
        logger.warning("%s: a stop's state is unknown; no stop is placed or moved", symbol)
        return None
    if StopState.EXECUTED in states:
        # The stop fired: its fills move the position first; the next run places what is due.
        logger.info("%s: the protective stop executed", symbol)
        return None
    working = [
        stop for stop, state in zip(stops, states, strict=True) if state is StopState.WORKING
    ]
    position = Position.objects.filter(symbol=symbol).first()
    wanted = (
        None
        if position is None
        else stop_wanted(
            quantity=position.quantity,
            entry_price=position.entry_price,
            distance=distance,
            filters=filters(symbol),
        )
    )
    if wanted is not None and len(working) == 1 and _matches(working[0], wanted):
        return None
    new_stop: Order | None = None
    if wanted is not None:
        new_stop = order_create(
            symbol=symbol,
            side=wanted.side,
            quantity=wanted.quantity,
            type=Order.Type.STOP_MARKET,
            purpose=Order.Purpose.STOP,
            stop_price=wanted.stop_price,
            reduce_only=True,
            decision_price=position.entry_price if position is not None else None,
            at=clock(),
        )
        order_send(order=new_stop, venue=venue, clock=clock)
        logger.info(
            "%s: protective stop %s %s at %s -> %s",
            symbol,
            wanted.side,
            wanted.quantity,
            wanted.stop_price,
            new_stop.status,
        )
        if new_stop.status not in ON_VENUE:
            # Refused or unknown: the old stop (if any) keeps protecting until the next run.
            logger.warning(
                "%s: the new stop is %s: %s", symbol, new_stop.status, new_stop.last_error
            )
            return new_stop
    for old in working:
        _cancelled(old, venue=venue, clock=clock)
    return new_stop


def _matches(stop: Order, wanted: WantedStop) -> bool:
    return (
        stop.side == str(wanted.side)
        and stop.quantity == wanted.quantity
        and stop.stop_price == wanted.stop_price
    )


# --- halt and flatten -------------------------------------------------------------------------


def entries_cancel(*, venue: Venue, clock: Clock = timezone.now) -> int:
    """On halt: cancel every open entry and exit order (stops stay). Returns how many were
    cancelled. Orders whose outcome is still unknown are left to reconciliation; run it again
    (every tick while halted) to catch those once they are known."""
    cancelled = 0
    orders = Order.objects.filter(purpose__in=CANCELLABLE_PURPOSES, status__in=ON_VENUE)
    for order in orders.order_by("id"):
        if _cancelled(order, venue=venue, clock=clock) and order.status == Order.Status.CANCELED:
            cancelled += 1
            logger.info("cancelled %s (%s)", order, order.purpose)
    return cancelled


def flatten(
    *,
    venue: Venue,
    symbols: Iterable[str],
    actor: str,
    reason: str,
    clock: Clock = timezone.now,
) -> list[Order]:
    """Cancel open entry orders and close every position of ``symbols`` with reduce-only
    MARKET orders (purpose FLATTEN), as the venue reports the positions. Sent even while halted
    or with the kill switch on: reduce-only orders may always be sent. Once a symbol is closed
    its stops are cancelled (they protect nothing); while it is not, they stay."""
    if not reason.strip():
        raise ValueError("a reason is required to flatten")
    logger.warning("flatten by %s: %s", actor, reason)
    cancelled = entries_cancel(venue=venue, clock=clock)
    logger.warning("flatten by %s: %d open entry/exit order(s) cancelled", actor, cancelled)
    filters = _Filters(venue)
    positions = venue.positions()
    sent: list[Order] = []
    for symbol in symbols:
        quantity = positions.get(symbol, Decimal(0))
        if quantity == 0:
            continue
        side = Side.SELL if quantity > 0 else Side.BUY
        closed = True
        for size in _chunks(abs(quantity), filters(symbol).market_max_qty):
            order = order_create(
                symbol=symbol,
                side=side,
                quantity=size,
                type=Order.Type.MARKET,
                purpose=Order.Purpose.FLATTEN,
                reduce_only=True,
                at=clock(),
            )
            order_send(order=order, venue=venue, clock=clock)
            logger.warning(
                "flatten by %s (%s): %s %s %s -> %s %s",
                actor,
                reason,
                side,
                size,
                symbol,
                order.status,
                order.last_error,
            )
            sent.append(order)
            closed = closed and order.status == Order.Status.FILLED
        if closed:
            for stop in _live_stops(symbol):
                _cancelled(stop, venue=venue, clock=clock)
    return sent


def _chunks(quantity: Decimal, maximum: Decimal) -> list[Decimal]:
    """``quantity`` in orders of at most ``maximum`` (MARKET_LOT_SIZE maxQty)."""
    if maximum <= 0:
        return [quantity]
    full, rest = divmod(quantity, maximum)
    return [maximum] * int(full) + ([rest] if rest > 0 else [])
