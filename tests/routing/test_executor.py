"""The executor tick end to end: python-binance's real HTTP stack against the local test server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from doctor.models import Heartbeat
from risk.models import RiskLimit, RiskState
from risk.services import risk_halt, risk_state_load
from routing.binance_testserver import BinanceTestServer
from routing.executor import TickContext, executor_tick
from routing.models import Fill, MarketBar, NavPoint, Order, Position, Signal
from routing.signal_services import signal_sources_sync
from routing.synthetic import SyntheticMarket
from routing.venues import BinanceFutures, VenueOrder, VenueOrderState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def stored_history(server: BinanceTestServer, *, trend: bool) -> None:
    """Five hours of closed 1-minute bars ending now (a steady trend, then a spike in the last
    minutes: momentum buys, mean reversion sells), and the venue at the last close."""
    market = SyntheticMarket(
        prices={"BTCUSDT": Decimal("60000")}, tick_sizes={"BTCUSDT": Decimal("0.1")}, seed=3
    )
    bars = market.bars(
        "BTCUSDT", start=NOW - timedelta(minutes=300), interval=timedelta(minutes=1), count=300
    )
    drift = Decimal("1.0015") if trend else Decimal(1)
    factor = Decimal(1)
    for n, bar in enumerate(bars):
        factor *= drift * (Decimal("1.01") if trend and n >= len(bars) - 3 else 1)
        MarketBar.objects.create(
            symbol="BTCUSDT",
            interval="1m",
            open_time=bar.open_time,
            close_time=bar.close_time,
            open=(bar.open * factor).quantize(Decimal("0.1")),
            high=(bar.high * factor * Decimal("1.001")).quantize(Decimal("0.1")),
            low=(bar.low * factor / Decimal("1.001")).quantize(Decimal("0.1")),
            close=(bar.close * factor).quantize(Decimal("0.1")),
            volume=bar.volume,
        )
    last = MarketBar.objects.order_by("-open_time").first()
    assert last is not None
    server.set_price("BTCUSDT", last.close)


def context(venue: Any) -> TickContext:
    return TickContext(clock=lambda: NOW, venue=venue, symbols=("BTCUSDT",))


def test_a_tick_turns_signals_into_checked_filled_orders_and_updates_the_books(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    # given a trending market, the classical sources on, and an account that may trade
    risk_state_load(initial_nav=Decimal("100000"))
    signal_sources_sync()
    stored_history(server, trend=True)

    # when one tick runs
    report = executor_tick(context(venue))

    # then signals were made from closed bars, orders sent once and filled on the venue
    assert report.signals == Signal.objects.count() > 0
    assert report.orders == Order.objects.filter(purpose=Order.Purpose.ENTRY).count() > 0
    entries = Order.objects.filter(purpose=Order.Purpose.ENTRY)
    assert {o.status for o in entries} == {Order.Status.FILLED}
    assert [o for o in server.accepted_orders if not o.reduce_only] == [
        o
        for o in server.accepted_orders
        if o.client_order_id in {e.client_order_id for e in entries}
    ]
    # and the local books agree with the venue
    position = Position.objects.get(symbol="BTCUSDT")
    assert position.quantity == server.position("BTCUSDT").amount
    assert Fill.objects.count() == len(server.trades)
    assert all(fill.signal_id is not None for fill in Fill.objects.all())
    # each order stayed inside the effective limits the sizer was given
    for order in Order.objects.filter(purpose=Order.Purpose.ENTRY):
        assert order.quantity * (order.decision_price or 0) <= Decimal(1000)
    # and the open position carries one protective stop on the venue
    stops = Order.objects.filter(purpose=Order.Purpose.STOP, status=Order.Status.OPEN)
    assert stops.count() == (1 if position.quantity else 0)
    nav = NavPoint.objects.get()
    assert RiskState.objects.get().nav == nav.nav
    beat = Heartbeat.objects.get(component="executor")
    assert beat.metrics["orders"] == report.orders
    assert beat.metrics["effective_limits"]["max_order_notional"]


def test_a_second_tick_with_nothing_new_sends_nothing_more(
    server: BinanceTestServer, venue: BinanceFutures, global_limits: RiskLimit
) -> None:
    # limits wide enough for each source to reach its target in one order
    RiskLimit.objects.filter(pk=global_limits.pk).update(
        max_order_notional=50000, max_position_notional=50000, max_gross_exposure=200000
    )
    risk_state_load(initial_nav=Decimal("100000"))
    signal_sources_sync()
    stored_history(server, trend=True)
    executor_tick(context(venue))
    accepted = len(server.accepted_orders)

    executor_tick(context(venue))

    # each source already holds its target: no new order
    assert len(server.accepted_orders) == accepted
    assert Position.objects.get(symbol="BTCUSDT").quantity == server.position("BTCUSDT").amount


class HaltingVenue:
    """Passes everything through, and halts trading right after the first order is sent."""

    def __init__(self, inner: BinanceFutures) -> None:
        self._inner = inner
        self.sent = 0

    def submit(self, order: VenueOrder) -> VenueOrderState:
        state = self._inner.submit(order)
        self.sent += 1
        if self.sent == 1:
            risk_halt(reason="operator halt during the tick", actor="olive")
        return state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_halt_set_during_a_tick_stops_its_remaining_orders(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    signal_sources_sync()
    stored_history(server, trend=True)
    halting = HaltingVenue(venue)

    report = executor_tick(context(halting))

    assert report.orders >= 2, "the test needs at least two orders in one tick"
    entries = [o for o in server.accepted_orders if not o.reduce_only]
    assert len(entries) == 1
    stopped = Order.objects.filter(status=Order.Status.CANCELED, purpose=Order.Purpose.ENTRY)
    assert stopped.count() == report.orders - 1
    assert all("halted" in order.last_error for order in stopped)


def test_an_external_signal_is_traded_by_the_next_tick(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    from routing.models import SignalSource
    from routing.signal_services import signal_submit

    risk_state_load(initial_nav=Decimal("100000"))
    stored_history(server, trend=False)
    SignalSource.objects.all().delete()  # only the external signal
    submitted = signal_submit(
        symbol="BTCUSDT", side="BUY", strength="0.5", source="my_model", at=NOW
    )

    report = executor_tick(context(venue))

    submitted.refresh_from_db()
    assert submitted.status == Signal.Status.ROUTED
    assert submitted.decision_price is not None
    order = Order.objects.get(signal=submitted)
    assert order.status == Order.Status.FILLED
    assert report.orders == 1
    assert server.position("BTCUSDT").amount == order.quantity


def test_an_external_signal_older_than_its_time_to_live_expires(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    from routing.models import SignalSource
    from routing.signal_services import signal_submit

    risk_state_load(initial_nav=Decimal("100000"))
    stored_history(server, trend=False)
    SignalSource.objects.all().delete()
    stale = signal_submit(
        symbol="BTCUSDT",
        side="BUY",
        strength="0.5",
        source="my_model",
        at=NOW - timedelta(minutes=10),
    )

    executor_tick(context(venue))

    stale.refresh_from_db()
    assert stale.status == Signal.Status.EXPIRED
    assert server.accepted_orders == []
