"""Futures money arithmetic against hand-computed cases, and per-signal attribution against the
account and against a plain cash-flow reference (exact rational arithmetic, no average entry)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.limits import Side
from routing.accounting import (
    FLAT,
    CashFlow,
    Fill,
    Funding,
    Ledger,
    PositionState,
    attribution_applied,
    attribution_funding_applied,
    fill_applied,
    funding_applied,
    ledger_applied,
    unrealized_pnl,
)
from tradingsite.decimals import STEP

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def filled(
    state: PositionState, side: Side, quantity: str, price: str, fee: str = "0"
) -> tuple[PositionState, Decimal]:
    return fill_applied(state, side=side, quantity=D(quantity), price=D(price), fee=D(fee))


def long_2_at_110() -> PositionState:
    state, _ = filled(FLAT, BUY, "2", "100")
    state, _ = filled(state, BUY, "1", "130")
    state, _ = filled(state, SELL, "1", "120")
    return state  # long 2 @ 110, realised 10 (see the tests below)


def short_3_at_95() -> PositionState:
    state, _ = filled(FLAT, SELL, "2", "100")
    state, _ = filled(state, SELL, "2", "90")
    state, _ = filled(state, BUY, "1", "80")
    return state  # short 3 @ 95, realised 15 (see the tests below)


# --- Longs ------------------------------------------------------------------------------------


def test_a_buy_from_flat_opens_a_long_at_the_fill_price() -> None:
    state, realized = filled(FLAT, BUY, "2", "100", fee="0.08")

    assert state.quantity == 2
    assert state.entry_price == 100
    assert realized == 0
    assert state.realized_pnl == 0
    assert state.fees == D("0.08")  # 2 x 100 x 0.04% taker


def test_adding_to_a_long_moves_the_entry_to_the_weighted_average() -> None:
    state, _ = filled(FLAT, BUY, "2", "100")

    state, realized = filled(state, BUY, "1", "130")

    # (2 x 100 + 1 x 130) / 3 = 330 / 3 = 110
    assert state.quantity == 3
    assert state.entry_price == 110
    assert realized == 0


def test_a_partial_reduce_of_a_long_realises_against_the_entry_and_keeps_it() -> None:
    state, _ = filled(FLAT, BUY, "2", "100")
    state, _ = filled(state, BUY, "1", "130")  # long 3 @ 110

    state, realized = filled(state, SELL, "1", "120")

    # (120 - 110) x 1 x (+1) = 10
    assert realized == 10
    assert state.quantity == 2
    assert state.entry_price == 110
    assert state.realized_pnl == 10


def test_closing_a_long_exactly_goes_flat_with_entry_zero() -> None:
    state, realized = filled(long_2_at_110(), SELL, "2", "105")

    # (105 - 110) x 2 = -10; cumulative 10 - 10 = 0
    assert realized == -10
    assert state.quantity == 0
    assert state.entry_price == 0
    assert state.realized_pnl == 0


def test_a_sell_larger_than_the_long_closes_it_and_opens_a_short_at_the_fill_price() -> None:
    state, realized = filled(long_2_at_110(), SELL, "5", "100")

    # close 2: (100 - 110) x 2 = -20; open the other 3 short @ 100
    assert realized == -20
    assert state.quantity == -3
    assert state.entry_price == 100
    assert state.realized_pnl == 10 - 20


# --- Shorts -----------------------------------------------------------------------------------


def test_a_sell_from_flat_opens_a_short_at_the_fill_price() -> None:
    state, realized = filled(FLAT, SELL, "2", "100", fee="0.04")

    assert state.quantity == -2
    assert state.entry_price == 100
    assert realized == 0
    assert state.fees == D("0.04")


def test_adding_to_a_short_moves_the_entry_to_the_weighted_average() -> None:
    state, _ = filled(FLAT, SELL, "2", "100")

    state, realized = filled(state, SELL, "2", "90")

    # (2 x 100 + 2 x 90) / 4 = 380 / 4 = 95
    assert state.quantity == -4
    assert state.entry_price == 95
    assert realized == 0


def test_a_partial_reduce_of_a_short_realises_against_the_entry_and_keeps_it() -> None:
    state, _ = filled(FLAT, SELL, "2", "100")
    state, _ = filled(state, SELL, "2", "90")  # short 4 @ 95

    state, realized = filled(state, BUY, "1", "80")

    # (80 - 95) x 1 x (-1) = 15: a short gains when the price falls
    assert realized == 15
    assert state.quantity == -3
    assert state.entry_price == 95


def test_closing_a_short_exactly_goes_flat_with_entry_zero() -> None:
    state, realized = filled(short_3_at_95(), BUY, "3", "100")

    # (100 - 95) x 3 x (-1) = -15; cumulative 15 - 15 = 0
    assert realized == -15
    assert state == PositionState(quantity=D(0), entry_price=D(0))


def test_a_buy_larger_than_the_short_closes_it_and_opens_a_long_at_the_fill_price() -> None:
    state, realized = filled(short_3_at_95(), BUY, "5", "90")

    # close 3: (90 - 95) x 3 x (-1) = 15; open the other 2 long @ 90
    assert realized == 15
    assert state.quantity == 2
    assert state.entry_price == 90
    assert state.realized_pnl == 30


# --- Rounding of the entry price --------------------------------------------------------------


def test_the_entry_is_rounded_half_even_and_the_close_realises_what_rounding_dropped() -> None:
    state, _ = filled(FLAT, BUY, "1", "100")

    state, _ = filled(state, BUY, "2", "100.00000001")

    # cost 100 + 200.00000002 = 300.00000002; / 3 = 100.0000000066... -> 100.00000001
    # residue = 300.00000002 - 3 x 100.00000001 = -0.00000001
    assert state.entry_price == D("100.00000001")
    assert state.entry_residue == D("-0.00000001")

    state, realized = filled(state, SELL, "1", "101")

    # a partial reduce is exact given the rounded entry: (101 - 100.00000001) x 1
    assert realized == D("0.99999999")

    state, realized = filled(state, SELL, "2", "101")

    # the close: (101 - 100.00000001) x 2 - (-0.00000001) = 1.99999998 + 0.00000001
    assert realized == D("1.99999999")
    # over the position's life: received 3 x 101 = 303, paid 300.00000002
    assert state.realized_pnl == D("2.99999998")
    assert state.entry_residue == 0


def test_unrealised_pnl_is_mark_minus_entry_times_quantity() -> None:
    # long 2 @ 110 at 125: (125 - 110) x 2 = 30; short 3 @ 95 at 125: (125 - 95) x -3 = -90
    assert unrealized_pnl(long_2_at_110(), mark_price=D(125)) == 30
    assert unrealized_pnl(short_3_at_95(), mark_price=D(125)) == -90
    assert unrealized_pnl(FLAT, mark_price=D(125)) == 0


# --- Fees -------------------------------------------------------------------------------------


def test_fees_accumulate_apart_from_realised_pnl() -> None:
    state, _ = filled(FLAT, BUY, "2", "100", fee="0.08")  # 200 x 0.04%

    state, realized = filled(state, SELL, "2", "110", fee="0.044")  # 220 x 0.02% maker

    assert realized == 20  # gross: (110 - 100) x 2
    assert state.realized_pnl == 20
    assert state.fees == D("0.124")  # 0.08 + 0.044


@pytest.mark.parametrize(
    ("quantity", "price", "fee"),
    [("0", "100", "0"), ("-1", "100", "0"), ("1", "0", "0"), ("1", "100", "-0.01")],
)
def test_a_fill_with_no_quantity_no_price_or_a_negative_fee_is_refused(
    quantity: str, price: str, fee: str
) -> None:
    with pytest.raises(ValueError, match="must be"):
        filled(FLAT, BUY, quantity, price, fee)


# --- Funding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "rate", "payment"),
    [
        # -quantity x mark x rate, mark 100
        ("2", "0.0001", "-0.02"),  # long, positive rate: -2 x 100 x 0.0001 -> the long pays
        ("2", "-0.0001", "0.02"),  # long, negative rate: the long receives
        ("-2", "0.0001", "0.02"),  # short, positive rate: the short receives
        ("-2", "-0.0001", "-0.02"),  # short, negative rate: the short pays
    ],
)
def test_funding_is_paid_by_longs_when_the_rate_is_positive_and_by_shorts_otherwise(
    quantity: str, rate: str, payment: str
) -> None:
    state = PositionState(quantity=D(quantity), entry_price=D(90))

    after, paid = funding_applied(state, mark_price=D(100), rate=D(rate))

    assert paid == D(payment)
    assert after.funding == D(payment)
    assert after.realized_pnl == 0
    assert after.quantity == state.quantity


def test_a_flat_position_neither_pays_nor_receives_funding() -> None:
    after, paid = funding_applied(FLAT, mark_price=D(100), rate=D("0.0001"))

    assert paid == 0
    assert after == FLAT


# --- The account: wallet, NAV and cash flows --------------------------------------------------


def test_the_wallet_counts_realised_pnl_fees_and_funding_and_nav_adds_unrealised() -> None:
    ledger, flow = ledger_applied(
        Ledger(start_balance=D(1000)),
        events=[
            Fill("BTCUSDT", BUY, D(2), D(100), D("0.08")),
            Funding("BTCUSDT", mark_price=D(105), rate=D("0.0001")),  # -2 x 105 x 0.0001
            Fill("BTCUSDT", SELL, D(1), D(110), D("0.044")),  # realises (110 - 100) x 1 = 10
        ],
    )

    # 1000 + 10 - (0.08 + 0.044) + (-0.021) = 1009.855
    assert ledger.wallet_balance == D("1009.855")
    # + unrealised at 120: (120 - 100) x 1 = 20
    assert ledger.nav({"BTCUSDT": D(120)}) == D("1029.855")
    assert flow == 0


def test_a_deposit_and_a_withdrawal_move_nav_but_not_pnl() -> None:
    marks = {"BTCUSDT": D(110)}
    ledger, _ = ledger_applied(
        Ledger(start_balance=D(1000)), events=[Fill("BTCUSDT", BUY, D(1), D(100), D("0.04"))]
    )
    # 1000 - 0.04 + unrealised (110 - 100) x 1 = 1009.96
    assert ledger.nav(marks) == D("1009.96")

    deposited, deposit_flow = ledger_applied(ledger, events=[CashFlow(D(500))])

    assert deposit_flow == 500
    assert deposited.nav(marks) == D("1509.96")
    assert deposited.wallet_balance == D("1499.96")

    withdrawn, withdrawal_flow = ledger_applied(deposited, events=[CashFlow(D(-200))])

    assert withdrawal_flow == -200
    assert withdrawn.nav(marks) == D("1309.96")
    for before, after in ((ledger, deposited), (deposited, withdrawn)):
        # PnL is what NAV moved less the cash flow: nothing here
        assert after.positions == before.positions
        assert after.unrealized_pnl(marks) == before.unrealized_pnl(marks) == 10


def test_only_the_cash_flows_of_the_applied_events_are_returned() -> None:
    ledger = Ledger(start_balance=D(1000), cash_flows=D(300))

    after, flow = ledger_applied(
        ledger,
        events=[CashFlow(D(50)), Fill("ETHUSDT", SELL, D(1), D(2000), D(0)), CashFlow(D(-20))],
    )

    assert flow == 30  # 50 - 20, for the risk engine's cash_flow
    assert after.cash_flows == 330
    assert after.wallet_balance == D(1330)


# --- Per-signal attribution: a hand-computed case ---------------------------------------------


def test_a_fill_moves_only_its_own_signals_virtual_position() -> None:
    virtual, realized = attribution_applied(
        {}, signal="trend", side=BUY, quantity=D(2), price=D(100), fee=D("0.08")
    )
    virtual, realized = attribution_applied(
        virtual, signal="meanrev", side=SELL, quantity=D(1), price=D(110), fee=D("0.044")
    )
    account, _ = filled(FLAT, BUY, "2", "100", fee="0.08")
    account, account_realized = filled(account, SELL, "1", "110", fee="0.044")

    # trend: long 2 @ 100; meanrev: short 1 @ 110, realising nothing
    assert virtual["trend"] == PositionState(quantity=D(2), entry_price=D(100), fees=D("0.08"))
    assert virtual["meanrev"] == PositionState(quantity=D(-1), entry_price=D(110), fees=D("0.044"))
    assert realized == 0
    # the account nets them: long 1 @ 100, having realised (110 - 100) x 1 = 10
    assert account_realized == 10
    # at 120: trend (120 - 100) x 2 = 40, meanrev (120 - 110) x -1 = -10; 40 - 10 = 10 + 20
    assert unrealized_pnl(virtual["trend"], mark_price=D(120)) == 40
    assert unrealized_pnl(virtual["meanrev"], mark_price=D(120)) == -10
    assert unrealized_pnl(account, mark_price=D(120)) == 20

    funded, paid = attribution_funding_applied(virtual, mark_price=D(120), rate=D("0.0001"))

    # trend -2 x 120 x 0.0001 = -0.024, meanrev +0.012; the account, long 1, pays 0.012
    assert (funded["trend"].funding, funded["meanrev"].funding) == (D("-0.024"), D("0.012"))
    assert paid == funding_applied(account, mark_price=D(120), rate=D("0.0001"))[1]


# --- Properties -------------------------------------------------------------------------------

SIGNALS = ("trend", "meanrev", "ml")
# Small whole quantities make exact closes and flips frequent; 8-place ones exercise rounding.
quantities = st.one_of(
    st.integers(min_value=1, max_value=4).map(Decimal),
    st.integers(min_value=1, max_value=10**9).map(lambda n: Decimal(n).scaleb(-5)),
)
prices = st.integers(min_value=1, max_value=10**13).map(lambda n: Decimal(n).scaleb(-8))
fees = st.integers(min_value=0, max_value=10**8).map(lambda n: Decimal(n).scaleb(-8))
fills = st.lists(
    st.tuples(st.sampled_from(SIGNALS), st.sampled_from(Side), quantities, prices, fees),
    min_size=1,
    max_size=40,
)
rates = st.integers(min_value=-(10**5), max_value=10**5).map(lambda n: Decimal(n).scaleb(-8))


def cash_flow_reference(
    sequence: list[tuple[str, Side, Decimal, Decimal, Decimal]], mark: Decimal
) -> Fraction:
    """Gross PnL with no average entry at all: what the fills paid and received, plus what the
    open quantity is worth at the mark."""
    cash = Fraction(0)
    open_quantity = Fraction(0)
    for _, side, quantity, price, _ in sequence:
        signed = Fraction(quantity) if side is Side.BUY else -Fraction(quantity)
        cash -= signed * Fraction(price)
        open_quantity += signed
    return cash + open_quantity * Fraction(mark)


@settings(max_examples=300)
@given(sequence=fills, mark=prices, rate=rates)
def test_signals_sum_to_the_account_and_the_account_to_its_cash_flows(
    sequence: list[tuple[str, Side, Decimal, Decimal, Decimal]], mark: Decimal, rate: Decimal
) -> None:
    # given the same fills booked on the account and, by signal, on virtual positions
    account = FLAT
    virtual: dict[str, PositionState] = {}
    largest = Decimal(0)
    for signal, side, quantity, price, fee in sequence:
        account, _ = fill_applied(account, side=side, quantity=quantity, price=price, fee=fee)
        largest = max(largest, abs(account.quantity))
        virtual, _ = attribution_applied(
            virtual, signal=signal, side=side, quantity=quantity, price=price, fee=fee
        )
    account, _ = funding_applied(account, mark_price=mark, rate=rate)
    virtual, _ = attribution_funding_applied(virtual, mark_price=mark, rate=rate)
    states = list(virtual.values())

    # Sums here are Fractions: the amounts can carry more digits than the default 28-digit
    # Decimal context keeps, and the test must not round what it checks.
    def total(values: list[Decimal]) -> Fraction:
        return sum((Fraction(v) for v in values), Fraction(0))

    # (a) the virtual quantities net to the account's
    assert total([s.quantity for s in states]) == account.quantity

    # (b) per-signal realised + unrealised - fees (+ funding) sums to the account's, exactly
    def pnl(s: PositionState) -> Fraction:
        return total([s.realized_pnl, unrealized_pnl(s, mark_price=mark), -s.fees, s.funding])

    assert sum(pnl(s) for s in states) == pnl(account)
    assert total([s.fees for s in states]) == account.fees == total([f for *_, f in sequence])
    assert total([s.funding for s in states]) == account.funding

    # (c) realised + unrealised is the fills' cash flow plus the open quantity at the mark
    def gross(s: PositionState) -> Fraction:
        return total([s.realized_pnl, unrealized_pnl(s, mark_price=mark)])

    assert gross(account) == cash_flow_reference(sequence, mark)
    for signal, state in virtual.items():
        assert gross(state) == cash_flow_reference([f for f in sequence if f[0] == signal], mark)

    # and the rounding is as documented: 8-place entries; the residue is under half a step
    # per unit averaged over (a partial reduce keeps it, so bound it by the largest position)
    for state in [*states, account]:
        assert state.entry_price == state.entry_price.quantize(STEP)
    assert abs(account.entry_residue) <= largest * STEP / 2


@given(sequence=fills, flows=st.lists(st.integers(-(10**6), 10**6).map(Decimal), max_size=5))
def test_cash_flows_change_nav_by_exactly_their_amount(
    sequence: list[tuple[str, Side, Decimal, Decimal, Decimal]], flows: list[Decimal]
) -> None:
    marks = {"BTCUSDT": D("50000")}
    ledger, _ = ledger_applied(
        Ledger(start_balance=D(10000)),
        events=[Fill("BTCUSDT", side, q, p, f) for _, side, q, p, f in sequence],
    )

    after, flow = ledger_applied(ledger, events=[CashFlow(amount) for amount in flows])

    assert flow == sum(flows)
    assert Fraction(after.nav(marks)) - Fraction(ledger.nav(marks)) == flow
