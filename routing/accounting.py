"""Futures money arithmetic as Binance USD-M does it in one-way mode: pure, ``Decimal``, no I/O.

One ``PositionState`` per symbol (the account's netted position) or per signal and symbol (a
signal's virtual position). Amounts are USDT; quantities are signed (long > 0, short < 0).

Opening or adding moves the entry price to the quantity-weighted average; reducing realises
``(price - entry) x closed quantity`` (negated for a short) and leaves the entry alone; closing
exactly goes flat with entry 0; a fill larger than the position closes all of it at the fill's
price and opens the rest at the same price. Commission is carried apart from realised PnL
(``realized_pnl`` is gross of fees, as Binance reports it). Funding is
``-quantity x mark x rate``: with a positive rate longs pay and shorts receive.

Rounding. ``entry_price`` is the exact weighted average rounded half-even to the project
precision (``tradingsite.decimals``, 8 places), so it can be stored and compared with the venue's.
The sub-step part the rounding drops is kept in ``entry_residue`` (cost basis minus
``quantity x entry_price``: at most half a step per unit of the quantity it was averaged over).
A partial reduce realises exactly ``(price - entry_price) x closed``; the residue stays with the
rest of the position and is realised by the fill that closes (or flips) it. Every other
operation is an exact product or sum (an ``Inexact`` trap checks it), so over any sequence of
fills ``realized + unrealized == cash paid and received for the fills + open quantity x mark``
holds to the last digit, for the account and for every signal alike. Amounts are left at the
precision the products give (a 3-place quantity times a 2-place price has 5 places) and may
carry more than the default context's 28 digits: rounding them for storage is the persistence
layer's decision, and a caller summing them exactly should widen its context.

Binance reports the entry price with more places than ours, so a reconciliation against its
position compares within a tolerance, never exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)

from risk.limits import Side
from tradingsite.decimals import quantize

ZERO = Decimal(0)

# Wide enough that products and sums of 8-place amounts never round; Inexact is trapped so
# that, if one ever did, the arithmetic fails loudly instead of drifting.
_EXACT = Context(
    prec=80,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)


# For the one inexact step, the average entry price (a division), before it is rounded.
_DIVISION = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])


@contextmanager
def _exact() -> Iterator[None]:
    with localcontext(_EXACT):
        yield


def _direction(value: Decimal) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


@dataclass(frozen=True)
class PositionState:
    quantity: Decimal  # signed: long > 0, short < 0
    entry_price: Decimal  # average entry, rounded to the project precision; 0 when flat
    realized_pnl: Decimal = ZERO  # cumulative, gross of fees
    fees: Decimal = ZERO  # cumulative commission paid, >= 0
    funding: Decimal = ZERO  # cumulative funding: received > 0, paid < 0
    # Cost basis minus quantity x entry_price: what the rounded entry does not carry (see the
    # module docstring). 0 when flat, and 0 for a state built from a venue's (quantity, entry).
    entry_residue: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.entry_price < 0:
            raise ValueError(f"entry price must be >= 0, got {self.entry_price}")
        if self.fees < 0:
            raise ValueError(f"fees must be >= 0, got {self.fees}")
        if self.quantity == 0 and (self.entry_price != 0 or self.entry_residue != 0):
            raise ValueError("a flat position has entry price 0 and no residue")

    @property
    def cost_basis(self) -> Decimal:
        """Signed USDT paid for the open quantity (negative for a short: USDT received)."""
        with _exact():
            return self.quantity * self.entry_price + self.entry_residue


FLAT = PositionState(quantity=ZERO, entry_price=ZERO)


def fill_applied(
    state: PositionState, *, side: Side, quantity: Decimal, price: Decimal, fee: Decimal
) -> tuple[PositionState, Decimal]:
    """The position after one fill, and the PnL that fill realised (gross of its fee)."""
    if quantity <= 0:
        raise ValueError(f"fill quantity must be > 0, got {quantity}")
    if price <= 0:
        raise ValueError(f"fill price must be > 0, got {price}")
    if fee < 0:
        raise ValueError(f"fee must be >= 0, got {fee}")
    with _exact():
        delta = quantity if side is Side.BUY else -quantity
        held = state.quantity
        after = held + delta
        fees = state.fees + fee
        if held == 0 or _direction(held) == _direction(delta):
            # Open or add: the cost basis grows by this fill's notional.
            entry, residue = _entry_for(after, state.cost_basis + delta * price)
            realized = ZERO
        elif _direction(after) == _direction(held):
            # Partial reduce: exact given the (rounded) entry; the residue stays open.
            realized = (price - state.entry_price) * (-delta)
            entry, residue = state.entry_price, state.entry_residue
        else:
            # Close exactly, or flip: everything held is closed at this price (residue
            # included), and whatever is left opens at this price.
            realized = price * held - state.cost_basis
            entry, residue = _entry_for(after, after * price) if after != 0 else (ZERO, ZERO)
        new = replace(
            state,
            quantity=after,
            entry_price=entry,
            entry_residue=residue,
            realized_pnl=state.realized_pnl + realized,
            fees=fees,
        )
    return new, realized


def _entry_for(quantity: Decimal, cost_basis: Decimal) -> tuple[Decimal, Decimal]:
    """The rounded average entry of an open position and the residue it leaves."""
    with localcontext(_DIVISION):
        entry = quantize(cost_basis / quantity)
    with _exact():
        return entry, cost_basis - quantity * entry


def funding_applied(
    state: PositionState, *, mark_price: Decimal, rate: Decimal
) -> tuple[PositionState, Decimal]:
    """The position after a funding settlement, and the payment (received > 0, paid < 0)."""
    if mark_price <= 0:
        raise ValueError(f"mark price must be > 0, got {mark_price}")
    if state.quantity == 0:
        return state, ZERO
    with _exact():
        # Notional at mark x rate; a long pays when the rate is positive.
        payment = ZERO - state.quantity * mark_price * rate  # never -0
        return replace(state, funding=state.funding + payment), payment


def unrealized_pnl(state: PositionState, *, mark_price: Decimal) -> Decimal:
    """PnL of the open quantity at ``mark_price``: (mark - entry) x quantity, residue included."""
    if state.quantity == 0:
        return ZERO
    with _exact():
        return state.quantity * mark_price - state.cost_basis


# --- The account: positions per symbol plus cash flows ----------------------------------------


@dataclass(frozen=True)
class Fill:
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class Funding:
    symbol: str
    mark_price: Decimal
    rate: Decimal


@dataclass(frozen=True)
class CashFlow:
    """A deposit (> 0), withdrawal (< 0) or transfer: moves the wallet, never PnL."""

    amount: Decimal


LedgerEvent = Fill | Funding | CashFlow


@dataclass(frozen=True)
class Ledger:
    start_balance: Decimal
    positions: Mapping[str, PositionState] = field(default_factory=dict)  # by symbol
    cash_flows: Decimal = ZERO  # cumulative, since start_balance

    @property
    def wallet_balance(self) -> Decimal:
        """Start + realised PnL - fees + funding + cash flows."""
        with _exact():
            return (
                self.start_balance
                + sum((p.realized_pnl - p.fees + p.funding for p in self.positions.values()), ZERO)
                + self.cash_flows
            )

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Unrealised PnL over every open position; each needs a mark (KeyError otherwise)."""
        with _exact():
            return sum(
                (
                    unrealized_pnl(p, mark_price=marks[symbol])
                    for symbol, p in self.positions.items()
                    if p.quantity != 0
                ),
                ZERO,
            )

    def nav(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Wallet balance + unrealised PnL at ``marks``."""
        with _exact():
            return self.wallet_balance + self.unrealized_pnl(marks)


def ledger_applied(ledger: Ledger, *, events: Iterable[LedgerEvent]) -> tuple[Ledger, Decimal]:
    """The ledger after ``events`` in order, and the cash flow among them.

    The cash flow is returned apart so that the risk engine can take it as ``cash_flow``:
    drawdown and daily loss must not count a deposit as profit or a withdrawal as a loss.
    """
    positions = dict(ledger.positions)
    flow = ZERO
    for event in events:
        if isinstance(event, CashFlow):
            with _exact():
                flow += event.amount
        elif isinstance(event, Fill):
            positions[event.symbol], _ = fill_applied(
                positions.get(event.symbol, FLAT),
                side=event.side,
                quantity=event.quantity,
                price=event.price,
                fee=event.fee,
            )
        else:
            positions[event.symbol], _ = funding_applied(
                positions.get(event.symbol, FLAT), mark_price=event.mark_price, rate=event.rate
            )
    with _exact():
        cash_flows = ledger.cash_flows + flow
    return replace(ledger, positions=positions, cash_flows=cash_flows), flow


# --- Per-signal attribution ------------------------------------------------------------------


def attribution_applied(
    virtual: Mapping[str, PositionState],
    *,
    signal: str,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
) -> tuple[dict[str, PositionState], Decimal]:
    """One symbol's virtual positions by signal after a fill of ``signal``'s order, and the PnL
    that fill realised for that signal.

    The venue nets every signal of a symbol into one position; here each signal keeps its own
    position at the real fill prices and fees, and a fill moves only its own signal's. Fed the
    same fills as the account's position, and the same funding (``attribution_funding_applied``):

    - the signals' quantities sum to the account's quantity, and their fees and funding to its;
    - their realised + unrealised PnL at any common mark sums exactly to the account's.

    Realised PnL alone does not split: a SELL that reduces the account's long can open a
    signal's short, realising nothing for the signal but something for the account. A fill
    with no signal of its own (a protective stop, ``flatten``, a reconciled fill) still needs
    a key here for the sums to hold.
    """
    positions = dict(virtual)
    positions[signal], realized = fill_applied(
        positions.get(signal, FLAT), side=side, quantity=quantity, price=price, fee=fee
    )
    return positions, realized


def attribution_funding_applied(
    virtual: Mapping[str, PositionState], *, mark_price: Decimal, rate: Decimal
) -> tuple[dict[str, PositionState], Decimal]:
    """Each signal's share of a funding settlement (funding is linear in quantity, so the
    shares sum exactly to the account's payment), and their total."""
    positions: dict[str, PositionState] = {}
    total = ZERO
    for signal, state in virtual.items():
        positions[signal], payment = funding_applied(state, mark_price=mark_price, rate=rate)
        with _exact():
            total += payment
    return positions, total


UNATTRIBUTED = "unattributed"


def attribution_split(
    virtual: Mapping[str, PositionState], *, side: Side, quantity: Decimal, fee: Decimal
) -> list[tuple[str, Decimal, Decimal]]:
    """How a fill with no signal of its own (a protective stop, ``flatten``, a reconciled fill)
    is shared among the signals' virtual positions: ``[(signal, quantity, fee), ...]``.

    It reduces the positions it opposes (a SELL the longs, a BUY the shorts) in proportion
    to their size, as the venue's netted position is reduced; what is left over (more than
    the signals hold) goes to ``UNATTRIBUTED``. Shares are rounded down to the project
    precision and the largest position takes the remainder, so quantities and fees add up
    exactly to the fill's, and a fill that closes everything closes every signal exactly.
    """
    if quantity <= 0:
        raise ValueError(f"fill quantity must be > 0, got {quantity}")
    if fee < 0:
        raise ValueError(f"fee must be >= 0, got {fee}")
    direction = 1 if side is Side.BUY else -1
    opposed = sorted(
        (
            (abs(state.quantity), name)
            for name, state in virtual.items()
            if _direction(state.quantity) == -direction
        ),
    )
    with localcontext(_DIVISION):
        held = sum((size for size, _ in opposed), ZERO)
        covered = min(quantity, held)
        parts: list[tuple[str, Decimal]] = []
        given = ZERO
        for index, (size, name) in enumerate(opposed):
            if index == len(opposed) - 1:
                share = covered - given
            else:
                share = (covered * size / held).quantize(Decimal(1).scaleb(-8), rounding=ROUND_DOWN)
            if share > 0:
                parts.append((name, share))
                given += share
        if quantity - covered > 0:
            parts.append((UNATTRIBUTED, quantity - covered))
        split: list[tuple[str, Decimal, Decimal]] = []
        fee_given = ZERO
        for index, (name, share) in enumerate(parts):
            if index == len(parts) - 1:
                part_fee = fee - fee_given
            else:
                part_fee = (fee * share / quantity).quantize(
                    Decimal(1).scaleb(-18), rounding=ROUND_DOWN
                )
            fee_given += part_fee
            split.append((name, share, part_fee))
    return split
