"""The Binance venue adapter through python-binance's real HTTP stack, against the local server."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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


def test_start_up_sets_one_way_mode_cross_margin_and_leverage(
    server: BinanceTestServer, venue: BinanceFutures, client: Any
) -> None:
    # given an account left in hedge mode with isolated margin
    client.futures_change_position_mode(dualSidePosition="true")
    client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED")

    venue.account_prepare(symbols=["BTCUSDT", "ETHUSDT"], leverage=3)

    assert client.futures_get_position_mode()["dualSidePosition"] is False
    risks = {
        row["symbol"]: row
        for row in client._request_futures_api("get", "positionRisk", True, 2, data={})
    }
    assert risks["BTCUSDT"]["marginType"] == "cross"
    assert {risks[s]["leverage"] for s in ("BTCUSDT", "ETHUSDT")} == {"3"}
    # and doing it again changes nothing and raises nothing
    venue.account_prepare(symbols=["BTCUSDT", "ETHUSDT"], leverage=3)
