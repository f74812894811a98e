"""Sending an order exactly once.

The order's client order id is stored before the first attempt and kept across retries and
restarts. When an attempt's outcome is unknown (read timeout, reset connection, 5xx, 503
"Unknown error", -1006/-1007) the order is marked UNKNOWN and the venue is asked for that id
until it answers definitively: the order exists (adopt its state) or -2013 (it was never
placed: only then is it sent again, with the same id). A failed status query is not an
answer. Binance accepts a client order id again once the first order has filled, so a
resubmission without that query could duplicate a filled order: it never happens here.

Each state change is committed before the next network call, so a crash at any point leaves
an order that reconciliation can resolve by its client order id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from doctor.models import Incident
from doctor.services import incident_open, incident_resolve
from risk.limits import Side
from risk.models import RiskLimit, RiskState
from risk.services import risk_halt
from routing.models import Order, Signal
from routing.resilience import (
    OrderNotFound,
    OutcomeUnknown,
    RetriesExhausted,
    VenueBanned,
    VenueCallError,
    VenueRejected,
)
from routing.venues import Venue, VenueOrder, VenueOrderState, VenueStatus

logger = logging.getLogger(__name__)

MAX_SUBMISSIONS = 5  # sends of one order (each after a definitive "not placed")
# A PENDING order (recorded, never sent: order_send marks SUBMITTING before any request) older
# than this belongs to a tick that died between deciding and sending: no running tick is that
# old (the executor task's hard time limit is 90 s).
PENDING_ABANDONED_AFTER = timedelta(minutes=3)
MAX_STATUS_QUERIES = 5  # per unknown outcome, before leaving it to reconciliation
DUPLICATE_CLIENT_ORDER_ID = -4116  # an order with this id is open: it was placed after all

STATUS_FROM_VENUE = {
    VenueStatus.NEW: Order.Status.OPEN,
    VenueStatus.PARTIALLY_FILLED: Order.Status.PARTIALLY_FILLED,
    VenueStatus.FILLED: Order.Status.FILLED,
    VenueStatus.CANCELED: Order.Status.CANCELED,
    VenueStatus.REJECTED: Order.Status.REJECTED,
    VenueStatus.EXPIRED: Order.Status.EXPIRED,
}

Clock = Callable[[], datetime]


def client_order_id_new() -> str:
    """A fresh id in Binance's alphabet (``^[.A-Z:/a-z0-9_-]{1,36}$``): 35 characters."""
    return f"ts-{uuid.uuid4().hex}"


def order_create(
    *,
    symbol: str,
    side: Side,
    quantity: Decimal,
    type: str = Order.Type.MARKET,
    purpose: str = Order.Purpose.ENTRY,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    reduce_only: bool = False,
    signal: Signal | None = None,
    decision_price: Decimal | None = None,
    at: datetime | None = None,
) -> Order:
    """Record the intent with its client order id, before anything is sent."""
    return Order.objects.create(
        client_order_id=client_order_id_new(),
        symbol=symbol,
        side=str(side),
        type=type,
        purpose=purpose,
        quantity=quantity,
        price=price,
        stop_price=stop_price,
        reduce_only=reduce_only,
        signal=signal,
        decision_price=decision_price,
        decided_at=at or timezone.now(),
    )


@dataclass(frozen=True)
class _NotAnswered:
    error: str


def _update(order: Order, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(order, name, value)
    Order.objects.filter(pk=order.pk).update(**fields)


def _apply_venue_state(order: Order, state: VenueOrderState, *, at: datetime) -> None:
    _update(
        order,
        status=STATUS_FROM_VENUE[state.status],
        venue_order_id=state.venue_order_id,
        filled_quantity=state.executed_quantity,
        acked_at=order.acked_at or at,
    )


def trading_blocked(order: Order) -> str:
    """Why this order may not be sent now ("" if it may). Re-read just before each send, so a
    halt or kill switch set during a tick stops the rest of it; reduce-only orders may always
    be sent (they can only shrink risk)."""
    if order.reduce_only:
        return ""
    state = RiskState.objects.values("halted", "halt_reason").first()
    if state is None:
        return "no risk state: trading is blocked until the risk engine has one"
    if state["halted"]:
        return f"trading is halted: {state['halt_reason']}"
    if RiskLimit.objects.filter(symbol="", kill_switch=True).exists():
        return "the kill switch is on"
    return ""


def _query(order: Order, venue: Venue) -> VenueOrderState | _NotAnswered | None:
    """The venue's definitive answer for the order's client id: its state, or None for -2013."""
    try:
        return venue.query(symbol=order.symbol, client_order_id=order.client_order_id)
    except OrderNotFound:
        return None
    except VenueCallError as error:
        return _NotAnswered(str(error))


def _resolve(order: Order, venue: Venue) -> VenueOrderState | _NotAnswered | None:
    answer: VenueOrderState | _NotAnswered | None = _NotAnswered("not asked yet")
    for _ in range(MAX_STATUS_QUERIES):
        answer = _query(order, venue)
        if not isinstance(answer, _NotAnswered):
            return answer
    return answer


VENUE_INCIDENT_CODES = ("venue_banned", "venue_failing")


def _halt_routing(reason: str, *, code: str) -> None:
    incident_open(component="venue", code=code, severity=Incident.Severity.CRITICAL, message=reason)
    risk_halt(reason=reason, actor="router")


def venue_incidents_resolve(*, at: datetime | None = None) -> int:
    """The venue answers again: resolve its ban / failure incidents. Not the halt they caused:
    a person lifts that (``risk_unhalt``)."""
    open_codes = Incident.objects.filter(
        component="venue", code__in=VENUE_INCIDENT_CODES, resolved_at__isnull=True
    ).values_list("code", flat=True)
    return sum(incident_resolve(component="venue", code=code, at=at) for code in open_codes)


def order_send(*, order: Order, venue: Venue, clock: Clock = timezone.now) -> Order:
    """Send ``order`` (PENDING) to ``venue`` so that it is placed at most once.

    Returns the order in its new state: OPEN/FILLED/... as the venue says, REJECTED with the
    reason, CANCELED if trading was blocked before sending, or UNKNOWN when the venue could
    not say (reconciliation resolves it by client order id).
    """
    for _ in range(MAX_SUBMISSIONS):
        blocked = trading_blocked(order)
        if blocked:
            _update(order, status=Order.Status.CANCELED, last_error=f"not sent: {blocked}")
            return order
        with transaction.atomic():
            _update(
                order,
                status=Order.Status.SUBMITTING,
                attempts=order.attempts + 1,
                submitted_at=order.submitted_at or clock(),
            )
        venue_order = VenueOrder(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=Side(order.side),
            type=order.type,
            quantity=order.quantity,
            price=order.price,
            stop_price=order.stop_price,
            reduce_only=order.reduce_only,
        )
        try:
            state = venue.submit(venue_order)
        except (OutcomeUnknown, VenueRejected) as error:
            if isinstance(error, VenueRejected) and error.code != DUPLICATE_CLIENT_ORDER_ID:
                _update(order, status=Order.Status.REJECTED, last_error=str(error))
                return order
            # Unknown outcome, or "duplicate id" (then it was placed by an earlier attempt).
            _update(order, status=Order.Status.UNKNOWN, last_error=str(error))
            answer = _resolve(order, venue)
            if answer is None:
                continue  # -2013: never placed; send again with the same id
            if isinstance(answer, _NotAnswered):
                _update(order, last_error=f"{error}; status query failed: {answer.error}")
                return order
            state = answer
        except VenueBanned as error:
            _update(order, status=Order.Status.REJECTED, last_error=str(error))
            _halt_routing(f"venue ban (HTTP 418): {error}", code="venue_banned")
            return order
        except RetriesExhausted as error:
            # Only retryable (not executed) failures get here: the order was not placed.
            _update(order, status=Order.Status.REJECTED, last_error=str(error))
            _halt_routing(f"venue failing repeatedly: {error}", code="venue_failing")
            return order
        _apply_venue_state(order, state, at=clock())
        return order
    _update(
        order,
        status=Order.Status.REJECTED,
        last_error=f"not placed after {MAX_SUBMISSIONS} submissions",
    )
    return order


def orders_resolve_unknown(*, venue: Venue, clock: Clock = timezone.now) -> dict[str, int]:
    """Reconciliation of orders whose outcome is not known (after a crash or a failed query):
    adopt the venue's state, or - when the venue has never seen the order - cancel the stale
    intent (it is not sent again after a restart: its decision is old)."""
    counts = {"adopted": 0, "not_placed": 0, "still_unknown": 0}
    counts["not_placed"] = Order.objects.filter(
        status=Order.Status.PENDING, updated_at__lt=clock() - PENDING_ABANDONED_AFTER
    ).update(
        status=Order.Status.CANCELED,
        last_error="never sent: the tick that decided it stopped before sending",
        updated_at=clock(),
    )
    pending = Order.objects.filter(status__in=[Order.Status.SUBMITTING, Order.Status.UNKNOWN])
    for order in pending.order_by("id"):
        answer = _resolve(order, venue)
        if isinstance(answer, _NotAnswered):
            counts["still_unknown"] += 1
        elif answer is None:
            _update(
                order,
                status=Order.Status.CANCELED,
                last_error="never reached the venue; not resent after the restart",
            )
            counts["not_placed"] += 1
        else:
            _apply_venue_state(order, answer, at=clock())
            counts["adopted"] += 1
    return counts
