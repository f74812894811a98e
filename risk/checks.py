"""Pre-trade checks: pure functions that decide whether one order intent may reach a venue.

``pretrade_check`` takes plain values (``risk.limits``) and returns a ``Decision`` listing every
limit the intent would break, each as a ``Refusal`` with a stable ``RefusalCode``, the limit, the
measured value and a message naming both. No Django, no I/O, ``Decimal`` arithmetic only (in the
current decimal context: the default 28 significant digits; ratios are exact quotients rounded
there, so the value compared is the value reported).

What is measured (a limit ``L`` allows values ``<= L`` and refuses ``> L``):

- order notional = quantity x intent price;
- position notional after = |position + signed quantity| x mark of the intent's symbol;
- gross exposure after = sum over symbols of |position after| x mark;
- leverage after = gross exposure after / NAV;
- liquidation distance after = (NAV - maintenance_margin_rate x gross after) / gross after.
  A simple cross-margin estimate: treat the whole account as one margin pool whose equity is
  NAV and whose maintenance margin is ``maintenance_margin_rate`` x gross exposure, and ask what
  fraction every position could move against the account at once before equity falls to that
  maintenance margin (moving all positions by a fraction ``d`` costs ``d`` x gross). It ignores
  per-symbol margin tiers, fees and funding, so keep ``min_liquidation_distance`` conservative.
  This one is a minimum: values below it are refused, exactly equal is allowed. With nothing
  open after the order (gross = 0) there is nothing to liquidate and it never refuses;
- daily loss, drawdown: the account's own fractions against ``max_daily_loss``/``max_drawdown``;
- open orders: ``open_orders + 1`` (this order included) against ``max_open_orders``;
- loss-streak cooldown: refused while ``now < cooldown_until``;
- kill switch on, or the account halted (the message carries the halt reason).

Choices made here:

- All refusals that apply are returned, in a fixed order, not only the first.
- An invalid intent (empty symbol; quantity or price not finite or ``<= 0``) gets
  ``invalid_intent`` and nothing else: no other number can be trusted.
- Marks. The intent's own symbol is valued at ``marks[symbol]`` when given, else at the intent
  price. A mark is needed only for a symbol that holds a position after the order; if one is
  absent (another symbol), not finite, or ``<= 0``, the order is refused with ``missing_mark``
  (fail closed) and the checks that need that mark (the position notional of that symbol, gross
  exposure, leverage, liquidation distance) are not evaluated, because no honest number exists.
- NAV. If NAV is not positive the order is refused with ``non_positive_nav``; leverage and
  liquidation distance, both ratios to NAV, are then not evaluated.
- Every check measures the state *after* the order, whatever its direction: an ordinary order
  that happens to shrink a position is still held to every limit. Orders meant to cut risk in a
  halted or over-exposed account must be sent reduce-only.
- Reduce-only orders must always be able to close, so they skip kill switch, halt, daily loss,
  drawdown, cooldown, open-order count, non-positive NAV, marks and every size, exposure,
  leverage and liquidation check. Their one check: the order may only move the position toward
  zero, ending at zero at most. Raising |position|, opening from flat, or flipping past zero is
  refused with ``reduce_only_would_increase`` (limit = signed position before, value = signed
  position after), and that is then the only refusal.

This runs for every order, so the happy path allocates nothing beyond a few Decimals: it returns
a shared accepted ``Decision``, and messages are built only for refusals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from risk.limits import AccountView, Limits, OrderIntent, Side
from tradingsite.decimals import STEP

ZERO = Decimal(0)
ONE = Decimal(1)
DEFAULT_MAINTENANCE_MARGIN_RATE = Decimal("0.004")

# Messages show amounts to STEP; a wide context so huge values format instead of raising.
_FORMAT_CONTEXT = Context(prec=80)


class RefusalCode(StrEnum):
    INVALID_INTENT = "invalid_intent"
    REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
    KILL_SWITCH = "kill_switch"
    HALTED = "halted"
    MAX_DAILY_LOSS = "max_daily_loss"
    MAX_DRAWDOWN = "max_drawdown"
    LOSS_STREAK_COOLDOWN = "loss_streak_cooldown"
    MAX_OPEN_ORDERS = "max_open_orders"
    MISSING_MARK = "missing_mark"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    NON_POSITIVE_NAV = "non_positive_nav"
    MAX_LEVERAGE = "max_leverage"
    MIN_LIQUIDATION_DISTANCE = "min_liquidation_distance"


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str
    limit: Decimal | int | None
    value: Decimal | int | None


@dataclass(frozen=True, slots=True)
class Decision:
    refusals: tuple[Refusal, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def codes(self) -> frozenset[RefusalCode]:
        return frozenset(refusal.code for refusal in self.refusals)

    @property
    def message(self) -> str:
        """Every refusal's message on one line ("" when accepted)."""
        return "; ".join(refusal.message for refusal in self.refusals)


ACCEPTED = Decision()


def pretrade_check(
    *,
    intent: OrderIntent,
    account: AccountView,
    limits: Limits,
    positions: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    now: datetime,
    maintenance_margin_rate: Decimal = DEFAULT_MAINTENANCE_MARGIN_RATE,
) -> Decision:
    """Check one intent against every limit; see the module docstring for the definitions.

    ``positions`` are signed base quantities per symbol (long > 0), ``marks`` mark prices per
    symbol, ``now`` an aware UTC datetime. Raises ``ValueError`` only for a maintenance margin
    rate outside [0, 1): that is a programming error, not an order to refuse.
    """
    if not (maintenance_margin_rate.is_finite() and ZERO <= maintenance_margin_rate < ONE):
        raise ValueError(
            f"maintenance_margin_rate must be in [0, 1), got {maintenance_margin_rate}"
        )

    symbol = intent.symbol
    quantity = intent.quantity
    price = intent.price
    if not (
        symbol and quantity.is_finite() and price.is_finite() and quantity > ZERO and price > ZERO
    ):
        return Decision((_invalid_intent(intent),))

    before = positions.get(symbol, ZERO)
    after = before + quantity if intent.side is Side.BUY else before - quantity

    if intent.reduce_only:
        # Toward zero and no further: same sign as before (or flat) and no larger.
        if after and (not before or (after > ZERO) != (before > ZERO) or abs(after) > abs(before)):
            return Decision((_reduce_only_would_increase(intent, before, after),))
        return ACCEPTED

    refusals: list[Refusal] = []

    if limits.kill_switch:
        refusals.append(
            Refusal(
                RefusalCode.KILL_SWITCH,
                "kill switch is on: only reduce-only orders are allowed",
                None,
                None,
            )
        )
    if account.halted:
        reason = account.halt_reason or "no reason recorded"
        refusals.append(
            Refusal(
                RefusalCode.HALTED,
                f"account is halted ({reason}): only reduce-only orders are allowed",
                None,
                None,
            )
        )
    if account.daily_loss > limits.max_daily_loss:
        refusals.append(
            _over(
                RefusalCode.MAX_DAILY_LOSS, "daily loss", account.daily_loss, limits.max_daily_loss
            )
        )
    if account.drawdown > limits.max_drawdown:
        refusals.append(
            _over(RefusalCode.MAX_DRAWDOWN, "drawdown", account.drawdown, limits.max_drawdown)
        )
    cooldown_until = account.cooldown_until
    if cooldown_until is not None and now < cooldown_until:
        refusals.append(
            Refusal(
                RefusalCode.LOSS_STREAK_COOLDOWN,
                f"loss-streak cooldown until {cooldown_until.isoformat()} "
                f"(loss streak {account.loss_streak}, "
                f"loss_streak_limit {limits.loss_streak_limit})",
                limits.loss_streak_limit,
                account.loss_streak,
            )
        )
    open_orders_after = account.open_orders + 1
    if open_orders_after > limits.max_open_orders:
        refusals.append(
            Refusal(
                RefusalCode.MAX_OPEN_ORDERS,
                f"open orders with this one {open_orders_after} "
                f"exceeds max_open_orders {limits.max_open_orders}",
                limits.max_open_orders,
                open_orders_after,
            )
        )

    order_notional = quantity * price
    if order_notional > limits.max_order_notional:
        refusals.append(
            _over(
                RefusalCode.MAX_ORDER_NOTIONAL,
                "order notional",
                order_notional,
                limits.max_order_notional,
                unit=" USDT",
            )
        )

    # Value the book after the order; a symbol holding a position needs a usable mark.
    missing: list[str] | None = None
    mark = marks.get(symbol, price)
    if not after:
        position_notional = ZERO
    elif mark.is_finite() and mark > ZERO:
        position_notional = abs(after) * mark
    else:
        missing = [symbol]
        position_notional = ZERO
    if missing is None and position_notional > limits.max_position_notional:
        refusals.append(
            _over(
                RefusalCode.MAX_POSITION_NOTIONAL,
                f"{symbol} position notional after the order",
                position_notional,
                limits.max_position_notional,
                unit=" USDT",
            )
        )
    gross = position_notional
    for other, held in positions.items():
        if not held or other == symbol:
            continue
        other_mark = marks.get(other)
        if other_mark is not None and other_mark.is_finite() and other_mark > ZERO:
            gross += abs(held) * other_mark
        elif missing is None:
            missing = [other]
        else:
            missing.append(other)

    if missing is not None:
        refusals.append(
            Refusal(
                RefusalCode.MISSING_MARK,
                f"no usable mark price for {', '.join(sorted(missing))}: "
                "exposure cannot be valued, so the order is refused",
                None,
                None,
            )
        )
    elif gross > limits.max_gross_exposure:
        refusals.append(
            _over(
                RefusalCode.MAX_GROSS_EXPOSURE,
                "gross exposure after the order",
                gross,
                limits.max_gross_exposure,
                unit=" USDT",
            )
        )

    nav = account.nav
    if not (nav.is_finite() and nav > ZERO):
        refusals.append(
            Refusal(
                RefusalCode.NON_POSITIVE_NAV,
                f"NAV {_format(nav)} USDT is not positive: only reduce-only orders are allowed",
                None,
                nav,
            )
        )
    elif missing is None and gross:
        leverage = gross / nav
        if leverage > limits.max_leverage:
            refusals.append(
                _over(
                    RefusalCode.MAX_LEVERAGE,
                    "leverage after the order",
                    leverage,
                    limits.max_leverage,
                    unit="x",
                )
            )
        distance = (nav - maintenance_margin_rate * gross) / gross
        if distance < limits.min_liquidation_distance:
            refusals.append(
                Refusal(
                    RefusalCode.MIN_LIQUIDATION_DISTANCE,
                    f"liquidation distance after the order {_format(distance, ROUND_FLOOR)} "
                    f"is below min_liquidation_distance {_format(limits.min_liquidation_distance)}",
                    limits.min_liquidation_distance,
                    distance,
                )
            )

    if not refusals:
        return ACCEPTED
    return Decision(tuple(refusals))


def _over(
    code: RefusalCode, what: str, value: Decimal, limit: Decimal, *, unit: str = ""
) -> Refusal:
    return Refusal(
        code,
        f"{what} {_format(value, ROUND_CEILING)}{unit} exceeds {code} {_format(limit)}{unit}",
        limit,
        value,
    )


def _invalid_intent(intent: OrderIntent) -> Refusal:
    return Refusal(
        RefusalCode.INVALID_INTENT,
        f"invalid order intent {intent.side} {intent.symbol or '(no symbol)'}: quantity "
        f"{intent.quantity} and price {intent.price} must be finite and > 0, symbol non-empty",
        None,
        None,
    )


def _reduce_only_would_increase(intent: OrderIntent, before: Decimal, after: Decimal) -> Refusal:
    return Refusal(
        RefusalCode.REDUCE_ONLY_WOULD_INCREASE,
        f"reduce-only {intent.side} {_format(intent.quantity)} {intent.symbol} would take the "
        f"position from {_format(before)} to {_format(after)}: reduce-only orders may only "
        "move it toward zero",
        before,
        after,
    )


def _format(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> str:
    """At least 2 and at most 8 decimals (STEP), e.g. ``10500.00``, ``10000.00000001``.

    Values finer than STEP round away from the limit (``ROUND_CEILING`` for a value over a
    maximum, ``ROUND_FLOOR`` under a minimum) so a refused value never prints equal to its limit.
    """
    if not value.is_finite():
        return str(value)
    text = f"{value.quantize(STEP, rounding=rounding, context=_FORMAT_CONTEXT):f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
