"""The live risk state as plain values and its pure transitions (no Django, no I/O).

Returns are cash-flow adjusted (time-weighted): each NAV observation ``nav`` that arrives with
a net cash flow ``flow`` (deposits > 0, withdrawals and transfers out < 0) earns the period
return ``r = (nav - flow - previous_nav) / previous_nav``, and a performance index compounds
those returns. Drawdown and daily loss are measured on that index, so moving money in or out
never looks like profit or loss:

- drawdown = 1 - index / peak index (>= 0)
- daily loss = max(0, 1 - index / index at the start of the UTC day)
- daily PnL = nav - day-start NAV - the day's cash flows (USDT)
- peak NAV = nav x peak index / index (what the current capital was worth at its peak)

Breaching ``max_drawdown`` or ``max_daily_loss`` latches the halt: only a person un-halts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from risk.limits import AccountView, Limits
from tradingsite.decimals import quantize

INDEX_PLACES = 18  # the performance index keeps more precision than money (it compounds)
ZERO = Decimal(0)
ONE = Decimal(1)


class Transition(StrEnum):
    DAY_ROLLED = "day_rolled"
    HALTED = "halted"
    UNHALTED = "unhalted"
    COOLDOWN_STARTED = "cooldown_started"
    MULTIPLIER_CHANGED = "multiplier_changed"


@dataclass(frozen=True)
class StateValues:
    nav: Decimal
    index: Decimal
    peak_index: Decimal
    day: date
    day_start_nav: Decimal
    day_start_index: Decimal
    day_cash_flows: Decimal
    loss_streak: int
    cooldown_until: datetime | None
    halted: bool
    halt_reason: str
    halted_at: datetime | None
    size_multiplier: Decimal

    @property
    def drawdown(self) -> Decimal:
        if self.peak_index <= ZERO:
            return ZERO
        return quantize(max(ZERO, ONE - self.index / self.peak_index))

    @property
    def daily_loss(self) -> Decimal:
        if self.day_start_index <= ZERO:
            return ZERO
        return quantize(max(ZERO, ONE - self.index / self.day_start_index))

    @property
    def daily_pnl(self) -> Decimal:
        return self.nav - self.day_start_nav - self.day_cash_flows

    @property
    def peak_nav(self) -> Decimal:
        if self.index <= ZERO:
            return self.nav
        return quantize(self.nav * self.peak_index / self.index)

    def account_view(self, *, open_orders: int) -> AccountView:
        return AccountView(
            nav=self.nav,
            drawdown=self.drawdown,
            daily_loss=self.daily_loss,
            loss_streak=self.loss_streak,
            cooldown_until=self.cooldown_until,
            halted=self.halted,
            halt_reason=self.halt_reason,
            open_orders=open_orders,
        )


def state_initial(*, nav: Decimal, at: datetime) -> StateValues:
    return StateValues(
        nav=nav,
        index=ONE,
        peak_index=ONE,
        day=at.date(),
        day_start_nav=nav,
        day_start_index=ONE,
        day_cash_flows=ZERO,
        loss_streak=0,
        cooldown_until=None,
        halted=False,
        halt_reason="",
        halted_at=None,
        size_multiplier=ONE,
    )


def _day_rolled(values: StateValues, at: datetime) -> StateValues:
    # The new day starts from the last NAV of the previous one.
    return replace(
        values,
        day=at.date(),
        day_start_nav=values.nav,
        day_start_index=values.index,
        day_cash_flows=ZERO,
    )


def state_halted(values: StateValues, *, reason: str, at: datetime) -> StateValues:
    """Latch the halt; an existing halt keeps its first reason and time."""
    if values.halted:
        return values
    return replace(values, halted=True, halt_reason=reason, halted_at=at)


def nav_observed(
    values: StateValues, *, nav: Decimal, cash_flow: Decimal, at: datetime, limits: Limits
) -> tuple[StateValues, list[Transition]]:
    """Fold one NAV observation (with the net cash flow since the last one) into the state."""
    transitions: list[Transition] = []
    if at.date() > values.day:
        values = _day_rolled(values, at)
        transitions.append(Transition.DAY_ROLLED)
    previous = values.nav
    period_return = (nav - cash_flow - previous) / previous if previous > ZERO else ZERO
    # A loss beyond the whole NAV (possible with leverage) floors the index at zero.
    index = quantize(max(ZERO, values.index * (ONE + period_return)), places=INDEX_PLACES)
    values = replace(
        values,
        nav=nav,
        index=index,
        peak_index=max(values.peak_index, index),
        day_cash_flows=values.day_cash_flows + cash_flow,
    )
    breach = _loss_breach(values, limits)
    if breach and not values.halted:
        values = state_halted(values, reason=breach, at=at)
        transitions.append(Transition.HALTED)
    return values, transitions


def _loss_breach(values: StateValues, limits: Limits) -> str:
    if values.drawdown > limits.max_drawdown:
        return f"drawdown {values.drawdown} exceeds max_drawdown {limits.max_drawdown}"
    if values.daily_loss > limits.max_daily_loss:
        return f"daily loss {values.daily_loss} exceeds max_daily_loss {limits.max_daily_loss}"
    return ""


def trade_closed(
    values: StateValues, *, pnl: Decimal, at: datetime, limits: Limits
) -> tuple[StateValues, list[Transition]]:
    """Count losing trades in a row; reaching the limit starts the cooldown (and a new count)."""
    if pnl > ZERO:
        return replace(values, loss_streak=0), []
    if pnl == ZERO:
        return values, []
    streak = values.loss_streak + 1
    if streak >= limits.loss_streak_limit:
        until = at + limits.loss_streak_cooldown
        return replace(values, loss_streak=0, cooldown_until=until), [Transition.COOLDOWN_STARTED]
    return replace(values, loss_streak=streak), []


def state_unhalted(values: StateValues, *, rebase: bool, at: datetime) -> StateValues:
    """Lift the halt. ``rebase`` accepts the current loss: the peak and the day restart here,
    so a drawdown or daily-loss halt does not latch again on the next observation."""
    values = replace(values, halted=False, halt_reason="", halted_at=None)
    if rebase:
        values = replace(
            values,
            peak_index=values.index,
            day=at.date(),
            day_start_nav=values.nav,
            day_start_index=values.index,
            day_cash_flows=ZERO,
        )
    return values
