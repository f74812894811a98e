"""The values risk decisions are made from: plain, immutable, Django-free.

``Limits`` are the limits in force for one symbol (global defaults merged with that symbol's
overrides, size limits already scaled by the autotuner). ``AccountView`` is what a pre-trade
check needs of the live risk state. A limit ``L`` allows values ``<= L`` and refuses ``> L``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from tradingsite.decimals import STEP


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True)
class Limits:
    max_order_notional: Decimal  # USDT per order
    max_position_notional: Decimal  # USDT per symbol, after the order
    max_gross_exposure: Decimal  # USDT, sum of |position| x mark over symbols
    max_leverage: Decimal  # gross exposure / NAV
    max_daily_loss: Decimal  # fraction of the day's starting (cash-flow-adjusted) value
    max_drawdown: Decimal  # fraction below the (cash-flow-adjusted) peak
    max_open_orders: int
    loss_streak_limit: int  # losing trades in a row that start a cooldown
    loss_streak_cooldown: timedelta
    min_liquidation_distance: Decimal  # adverse move (fraction) the account must survive
    autotune_floor: Decimal  # lowest multiplier the autotuner may apply, in (0, 1]
    kill_switch: bool
    stop_distance: Decimal = Decimal("0.05")  # protective stop, fraction of the entry price


# The limits the autotuner scales (it never touches loss, drawdown or the kill switch).
# max_leverage is not scaled: with gross exposure scaled, the leverage it allows shrinks too.
SIZE_LIMITS = ("max_order_notional", "max_position_notional", "max_gross_exposure")


def limits_scaled(configured: Limits, *, multiplier: Decimal) -> Limits:
    """Size limits x multiplier (clamped to [floor, 1]); never above the configured value."""
    clamped = min(Decimal(1), max(configured.autotune_floor, multiplier))

    def scaled(limit: Decimal) -> Decimal:
        # Rounded down (a cap is never above configured x multiplier), but never below the
        # floor's own value rounded up; both stay within the configured limit.
        lowest = (limit * configured.autotune_floor).quantize(STEP, rounding=ROUND_CEILING)
        return max((limit * clamped).quantize(STEP, rounding=ROUND_FLOOR), lowest)

    return replace(
        configured,
        max_order_notional=scaled(configured.max_order_notional),
        max_position_notional=scaled(configured.max_position_notional),
        max_gross_exposure=scaled(configured.max_gross_exposure),
    )


def limits_as_dict(limits: Limits) -> dict[str, str | int | bool]:
    result: dict[str, str | int | bool] = {}
    for field in fields(limits):
        value = getattr(limits, field.name)
        if isinstance(value, timedelta):
            result[field.name] = int(value.total_seconds())
        elif isinstance(value, bool | int):
            result[field.name] = value
        else:
            result[field.name] = str(value)
    return result


@dataclass(frozen=True)
class AccountView:
    nav: Decimal
    drawdown: Decimal  # >= 0
    daily_loss: Decimal  # >= 0, fraction lost since the day started
    loss_streak: int
    cooldown_until: datetime | None
    halted: bool
    halt_reason: str
    open_orders: int


@dataclass(frozen=True)
class OrderIntent:
    symbol: str
    side: Side
    quantity: Decimal  # > 0, base asset
    price: Decimal  # > 0, the price the notional is valued at (decision / mark)
    reduce_only: bool = False

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price
