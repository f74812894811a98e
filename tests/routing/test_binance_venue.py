"""The Binance venue adapter through python-binance's real HTTP stack, against the local server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from risk.limits import Side
from routing.binance_testserver import BinanceTestServer
from routing.resilience import OrderNotFound, RetryPolicy, VenueRejected
from routing.venues import BinanceFutures, Venue, VenueOrder, VenueStatus
from routing.weights import WeightBudget
from tests.routing.conftest import STARTING_BALANCE


def test_it_satisfies_the_venue_protocol(venue: BinanceFutures) -> None:
    typed: Venue = venue
    assert typed is venue


def test_a_market_order_shows_up_in_trades_positions_and_balance(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    state = venue.submit(
        VenueOrder(
            client_order_id="t-1",
            symbol="BTCUSDT",
            side=Side.BUY,
            type="MARKET",
            quantity=Decimal("0.010"),
        )
    )

    assert state.status is VenueStatus.FILLED
    assert state.executed_quantity == Decimal("0.010")
    trades = venue.trades(symbol="BTCUSDT", since_ms=0)
    assert len(trades) == 1
    trade = trades[0]
    assert (trade.side, trade.quantity, trade.venue_order_id) == (
        Side.BUY,
        Decimal("0.010"),
        state.venue_order_id,
    )
    assert trade.fee == trade.quantity * trade.price * Decimal("0.0005")
    assert venue.positions() == {"BTCUSDT": Decimal("0.010")}
    assert venue.wallet_balance() == STARTING_BALANCE - trade.fee
    assert set(venue.mark_prices()) >= {"BTCUSDT", "ETHUSDT"}
    assert venue.query(symbol="BTCUSDT", client_order_id="t-1").status is VenueStatus.FILLED


def test_an_unknown_order_is_not_found(venue: BinanceFutures) -> None:
    with pytest.raises(OrderNotFound):
        venue.query(symbol="BTCUSDT", client_order_id="never-sent")


def test_a_filter_violation_is_a_definitive_rejection(venue: BinanceFutures) -> None:
    with pytest.raises(VenueRejected) as rejected:
        venue.submit(
            VenueOrder(
                client_order_id="t-2",
                symbol="BTCUSDT",
                side=Side.BUY,
                type="MARKET",
                quantity=Decimal("0.0000001"),
            )
        )
    assert rejected.value.code is not None


def test_the_weight_budget_sees_what_binance_reports(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    budget = WeightBudget(2400, name="venue-test")
    venue_with_budget = BinanceFutures(
        client=venue._client, policy=RetryPolicy(sleep=lambda _: None), budget=budget
    )
    venue_with_budget.mark_prices()
    assert budget.used(now_ms=venue_with_budget._now_ms()) >= server.used_weight > 0
