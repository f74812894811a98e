"""Fills, positions and NAV from the venue (python-binance against the local test server)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from risk.limits import Side
from risk.models import RiskState
from risk.services import risk_state_load
from routing.accounting import FLAT, fill_applied
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record, nav_record
from routing.models import CashFlow, Fill, NavPoint, Position
from routing.orders import order_create, order_send
from routing.venues import BinanceFutures
from tradingsite.models import OutboxEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


def trade(venue: BinanceFutures, side: Side, quantity: str) -> None:
    order_send(
        order=order_create(symbol="BTCUSDT", side=side, quantity=Decimal(quantity)), venue=venue
    )


def test_fills_are_recorded_once_and_move_the_position_like_the_venue(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, Side.BUY, "0.010")
    server.set_price("BTCUSDT", Decimal("61000"))
    trade(venue, Side.BUY, "0.020")
    server.set_price("BTCUSDT", Decimal("62000"))
    trade(venue, Side.SELL, "0.015")

    first = fills_record(venue=venue, symbol="BTCUSDT")
    again = fills_record(venue=venue, symbol="BTCUSDT")

    assert len(first) == 3
    assert again == []
    assert Fill.objects.count() == 3
    position = Position.objects.get(symbol="BTCUSDT")
    venue_position = server.position("BTCUSDT")
    assert position.quantity == venue_position.amount == Decimal("0.015")
    # independent recomputation from the venue's own trades
    state = FLAT
    for t in server.trades:
        state, _ = fill_applied(
            state, side=Side(t.side), quantity=t.qty, price=t.price, fee=t.commission
        )
    assert (position.entry_price, position.realized_pnl, position.fees) == (
        state.entry_price,
        state.realized_pnl,
        state.fees,
    )
    assert sum(f.realized_pnl for f in Fill.objects.all()) == position.realized_pnl
    # and what the venue itself says it realised, to the 1e-8 its rounded entry price allows
    venue_realized = sum(t.realized_pnl for t in server.trades)
    assert abs(venue_realized - position.realized_pnl) < Decimal("0.00000001")
    assert OutboxEntry.objects.filter(collection="positions", doc_id="BTCUSDT").exists()


def test_nav_is_wallet_plus_unrealised_and_feeds_the_risk_state(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, Side.BUY, "0.100")
    fills_record(venue=venue, symbol="BTCUSDT")
    server.set_price("BTCUSDT", Decimal("60500"))

    point = nav_record(venue=venue, at=datetime.now(UTC))

    marks = venue.mark_prices()
    position = Position.objects.get(symbol="BTCUSDT")
    expected_unrealized = (marks["BTCUSDT"] - position.entry_price) * position.quantity
    assert point.wallet == server.balance
    assert point.unrealized_pnl == expected_unrealized
    assert point.nav == server.balance + expected_unrealized
    assert RiskState.objects.get().nav == point.nav


def test_a_deposit_moves_nav_but_is_passed_to_risk_as_a_cash_flow(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    nav_record(venue=venue, at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    server.transfer(Decimal("50000"))
    CashFlow.objects.create(
        at=datetime(2026, 3, 2, 12, 1, tzinfo=UTC),
        kind=CashFlow.Kind.DEPOSIT,
        amount=Decimal("50000"),
        venue_id="tran-1",
    )

    point = nav_record(venue=venue, at=datetime(2026, 3, 2, 12, 2, tzinfo=UTC))

    assert point.cash_flow == Decimal("50000")
    state = RiskState.objects.get()
    assert state.nav == Decimal("150000")
    assert state.day_cash_flows == Decimal("50000")
    assert not state.halted
    assert NavPoint.objects.count() == 2


def test_funding_is_booked_on_the_position_and_transfers_as_cash_flows_once(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    from routing.books import income_record
    from routing.models import FundingPayment

    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, Side.BUY, "0.100")
    fills_record(venue=venue, symbol="BTCUSDT")
    paid = server.settle_funding("BTCUSDT", Decimal("0.0001"))
    server.transfer(Decimal("2500"))

    booked = income_record(venue=venue)
    again = income_record(venue=venue)

    assert (booked, again) == (2, 0)
    funding = FundingPayment.objects.get()
    assert funding.amount == paid < 0  # a long pays a positive rate
    assert Position.objects.get(symbol="BTCUSDT").funding == paid
    transfer = CashFlow.objects.get()
    assert (transfer.kind, transfer.amount) == (CashFlow.Kind.TRANSFER, Decimal("2500"))
    # NAV follows the wallet; the transfer is handed to risk as a cash flow, the funding not
    point = nav_record(venue=venue, at=datetime.now(UTC))
    assert point.cash_flow == Decimal("2500")
    assert point.wallet == server.balance
