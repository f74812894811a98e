"""Binance USD-M exchange filters: parse them from exchangeInfo, apply them before submission.

Every quantity and price is rounded here with ``Decimal`` (never python-binance's float
``round_step_size``), and an order that cannot satisfy the filters is rejected locally with a
reason instead of being sent to earn a -1013/-4164 from the venue (SPEC §6, §13).

The filters of one futures symbol (SPEC §13):

- ``PRICE_FILTER``: ``tickSize``
- ``LOT_SIZE``: ``stepSize``, ``minQty``, ``maxQty`` (limit orders)
- ``MARKET_LOT_SIZE``: the same three for market orders
- ``MIN_NOTIONAL``: ``notional`` (quantity * price, in the quote asset)

Not covered: ``PRICE_FILTER``'s min/max price and ``PERCENT_PRICE`` (a limit price far from the
market); the venue still rejects those and the retry policy records that as a rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any

MARKET = "MARKET"
LIMIT = "LIMIT"
BUY = "BUY"
SELL = "SELL"
ORDER_TYPES = frozenset({MARKET, LIMIT})
SIDES = frozenset({BUY, SELL})

# Wide enough for any exchange value; Inexact is trapped so a rounding here is exact or raises,
# never silently off by one step.
_EXACT_PRECISION = 60


@dataclass(frozen=True)
class SymbolFilters:
    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal


class RejectionReason(StrEnum):
    QUANTITY_BELOW_MIN = "QUANTITY_BELOW_MIN"
    QUANTITY_ABOVE_MAX = "QUANTITY_ABOVE_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    PRICE_BELOW_TICK = "PRICE_BELOW_TICK"


@dataclass(frozen=True)
class RoundedOrder:
    """What to send. ``price`` is None for a market order (no price is sent)."""

    quantity: Decimal
    price: Decimal | None
    notional: Decimal


@dataclass(frozen=True)
class FilterRejection:
    reason: RejectionReason
    message: str


def filters_from_exchange_info(symbol_info: Mapping[str, Any]) -> SymbolFilters:
    """The filters of one ``symbols[]`` entry of ``GET /fapi/v1/exchangeInfo``.

    ``MARKET_LOT_SIZE`` falls back to ``LOT_SIZE`` when absent (instruments written by hand for
    the paper venue or tests); every other filter is required.
    """
    symbol = symbol_info.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"exchangeInfo symbol entry without a symbol name: {symbol_info!r}")
    raw_filters = symbol_info.get("filters")
    if not isinstance(raw_filters, list):
        raise ValueError(f"{symbol}: exchangeInfo entry has no 'filters' list")
    by_type: dict[str, Mapping[str, Any]] = {}
    for raw in raw_filters:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("filterType"), str):
            raise ValueError(f"{symbol}: malformed filter {raw!r}")
        by_type[raw["filterType"]] = raw

    def required(filter_type: str) -> Mapping[str, Any]:
        if filter_type not in by_type:
            raise ValueError(f"{symbol}: exchangeInfo has no {filter_type} filter")
        return by_type[filter_type]

    def number(filter_type: str, raw: Mapping[str, Any], field: str, *, positive: bool) -> Decimal:
        return _decimal_field(symbol, filter_type, raw, field, positive=positive)

    price_filter = required("PRICE_FILTER")
    lot_size = required("LOT_SIZE")
    min_notional = required("MIN_NOTIONAL")
    market_type = "MARKET_LOT_SIZE" if "MARKET_LOT_SIZE" in by_type else "LOT_SIZE"
    market_lot_size = by_type[market_type]

    filters = SymbolFilters(
        symbol=symbol,
        tick_size=number("PRICE_FILTER", price_filter, "tickSize", positive=True),
        step_size=number("LOT_SIZE", lot_size, "stepSize", positive=True),
        min_qty=number("LOT_SIZE", lot_size, "minQty", positive=False),
        max_qty=number("LOT_SIZE", lot_size, "maxQty", positive=True),
        market_step_size=number(market_type, market_lot_size, "stepSize", positive=True),
        market_min_qty=number(market_type, market_lot_size, "minQty", positive=False),
        market_max_qty=number(market_type, market_lot_size, "maxQty", positive=True),
        min_notional=number("MIN_NOTIONAL", min_notional, "notional", positive=False),
    )
    if filters.min_qty > filters.max_qty:
        raise ValueError(f"{symbol}: LOT_SIZE minQty {filters.min_qty} > maxQty {filters.max_qty}")
    if filters.market_min_qty > filters.market_max_qty:
        raise ValueError(
            f"{symbol}: {market_type} minQty {filters.market_min_qty} "
            f"> maxQty {filters.market_max_qty}"
        )
    return filters


def order_rounded(
    *,
    filters: SymbolFilters,
    quantity: Decimal,
    price: Decimal,
    order_type: str,
    side: str,
) -> RoundedOrder | FilterRejection:
    """Round an order to the symbol's filters, or say why it cannot be sent.

    ``quantity`` is the unsigned size; ``price`` is the limit price for LIMIT orders and the
    reference (decision) price for MARKET orders, used only for the notional check.

    - Quantity rounds DOWN to the step (``MARKET_LOT_SIZE`` for market orders): rounding never
      adds exposure the sizing and risk checks did not approve.
    - A LIMIT price rounds to the tick on the passive side: down for BUY, up for SELL. A limit
      price is the worst price the decision accepted; rounding the other way would let the
      order pay more (or sell for less) than that.
    - Rejected when a BUY limit price rounds down to zero, when the rounded quantity is zero,
      below min or above max quantity, or when rounded quantity * price is below the minimum
      notional. Nothing is clamped or rounded up to make an order fit: that would trade a size
      nobody decided on.
    """
    if order_type not in ORDER_TYPES:
        raise ValueError(f"unsupported order type {order_type!r}; expected one of MARKET, LIMIT")
    if side not in SIDES:
        raise ValueError(f"unsupported side {side!r}; expected BUY or SELL")
    for name, value in (("quantity", quantity), ("price", price)):
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise ValueError(f"{filters.symbol}: {name} must be a positive Decimal, got {value!r}")

    if order_type == MARKET:
        step, min_qty, max_qty = (
            filters.market_step_size,
            filters.market_min_qty,
            filters.market_max_qty,
        )
    else:
        step, min_qty, max_qty = filters.step_size, filters.min_qty, filters.max_qty

    with localcontext() as context:
        context.prec = _EXACT_PRECISION
        context.traps[Inexact] = True
        rounded_quantity = _floor_to_step(quantity, step)
        sent_price: Decimal | None
        if order_type == MARKET:
            sent_price = None
            notional = rounded_quantity * price
        else:
            sent_price = (
                _floor_to_step(price, filters.tick_size)
                if side == BUY
                else _ceil_to_step(price, filters.tick_size)
            )
            notional = rounded_quantity * sent_price

    label = f"{filters.symbol} {side} {order_type}"
    if sent_price is not None and sent_price <= 0:
        return FilterRejection(
            RejectionReason.PRICE_BELOW_TICK,
            f"{label}: price {price} rounds down to zero (tick {filters.tick_size})",
        )
    if rounded_quantity <= 0 or rounded_quantity < min_qty:
        return FilterRejection(
            RejectionReason.QUANTITY_BELOW_MIN,
            f"{label}: quantity {quantity} rounds down to {rounded_quantity} (step {step}), "
            f"below the minimum {min_qty}",
        )
    if rounded_quantity > max_qty:
        return FilterRejection(
            RejectionReason.QUANTITY_ABOVE_MAX,
            f"{label}: quantity {rounded_quantity} is above the maximum {max_qty}",
        )
    if notional < filters.min_notional:
        price_used = price if sent_price is None else sent_price
        return FilterRejection(
            RejectionReason.NOTIONAL_BELOW_MIN,
            f"{label}: notional {notional} ({rounded_quantity} * {price_used}) "
            f"is below the minimum {filters.min_notional}",
        )
    return RoundedOrder(quantity=rounded_quantity, price=sent_price, notional=notional)


def _floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    # Decimal's remainder is exact (unlike value / step, which rounds to the context precision
    # and can floor to one step too many); for positive values it is the distance to the step
    # below.
    return _in_step_places(value - value % step, step)


def _ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    remainder = value % step
    return _in_step_places(value if remainder == 0 else value - remainder + step, step)


def _in_step_places(value: Decimal, step: Decimal) -> Decimal:
    """The same number written with no more decimals than the step (0.0100 -> 0.01 for 0.010).

    Sent as it is written: more decimals than the asset allows earn -1111 even when the extra
    digits are zeros.
    """
    exponent = min(int(step.normalize().as_tuple().exponent), 0)
    return value.quantize(Decimal(1).scaleb(exponent))


def _decimal_field(
    symbol: str, filter_type: str, raw: Mapping[str, Any], field: str, *, positive: bool
) -> Decimal:
    if field not in raw:
        raise ValueError(f"{symbol}: {filter_type} has no {field!r}")
    value = raw[field]
    # Binance sends strings; a float would already have lost the exact step.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{symbol}: {filter_type}.{field} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{symbol}: {filter_type}.{field} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        expected = "positive" if positive else "non-negative"
        raise ValueError(f"{symbol}: {filter_type}.{field} must be {expected}, got {value!r}")
    return number
