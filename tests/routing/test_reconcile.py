"""Reconciliation repairs the books from the venue (python-binance against the local test server,
and the paper venue after real executor ticks) and halts a symbol whose difference persists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from doctor.models import Incident
from risk.limits import Side
from risk.services import risk_state_load
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record, nav_record
from routing.models import CashFlow, Fill, Instrument, Order, Position, SignalSource
from routing.orders import order_create, order_send
from routing.reconcile import reconcile, symbol_halted, symbol_unhalt
from routing.resilience import RetryPolicy
from routing.signal_services import signal_sources_sync
from routing.tasks import (
    RECONCILE_RETRIES,
    executor_run_once,
    reconcile_run_once,
    reconcile_task,
)
from routing.venues import BinanceFutures
from tradingsite.celery import app
from tradingsite.guard import GuardContext, binance_client_for_writing
from tradingsite.locks import single_flight, skipped_count

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

SYMBOLS = ("BTCUSDT",)


@pytest.fixture
def server() -> Iterator[BinanceTestServer]:
    # The client's timeout (below) is shorter than a held response, so "accepted then
    # timeout" really times out inside python-binance.
    with BinanceTestServer(balance=Decimal("100000"), timeout_seconds=0.6) as running:
        yield running


@pytest.fixture
def client(server: BinanceTestServer, settings: Any) -> Any:
    """python-binance's client: the venue's, and a person trading by hand on the same account."""
    settings.BINANCE_API_KEY = server.api_key
    settings.BINANCE_API_SECRET = server.api_secret
    settings.BINANCE_HTTP_TIMEOUT = 0.3
    return binance_client_for_writing(
        context=GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
    )


@pytest.fixture
def venue(client: Any) -> BinanceFutures:
    risk_state_load(initial_nav=Decimal("100000"))
    return BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))


def send(
    venue: BinanceFutures, side: Side, quantity: str, price: str | None = None, **kwargs: Any
) -> Order:
    order = order_create(
        symbol="BTCUSDT",
        side=side,
        quantity=Decimal(quantity),
        type=Order.Type.LIMIT if price else Order.Type.MARKET,
        price=Decimal(price) if price else None,
        **kwargs,
    )
    return order_send(order=order, venue=venue)


def by_hand(client: Any, client_order_id: str, side: str, quantity: str, **kwargs: Any) -> None:
    """An order placed on the account by someone else than this system."""
    client.futures_create_order(
        symbol="BTCUSDT",
        side=side,
        quantity=quantity,
        newClientOrderId=client_order_id,
        **({"type": "LIMIT", "timeInForce": "GTC"} if "price" in kwargs else {"type": "MARKET"}),
        **kwargs,
    )


def open_incident(code: str) -> Incident | None:
    return Incident.objects.filter(
        component="reconcile", code=code, resolved_at__isnull=True
    ).first()


def instrument() -> Instrument:
    return Instrument.objects.create(
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("120"),
        min_notional=Decimal("100"),
    )


def test_an_order_whose_answer_was_lost_is_adopted_with_its_fill(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    # given an order the venue executed but whose answer timed out, with every status query
    # failing after it, so it stays UNKNOWN here
    server.faults.push("accepted_then_timeout", method="POST", path="/fapi/v1/order")
    server.faults.push("server_error", method="GET", path="/fapi/v1/order", count=1000)
    lost = send(venue, Side.BUY, "0.010")
    assert lost.status == Order.Status.UNKNOWN
    server.faults.clear()
    # and a later order whose fill is recorded, so the usual fill cursor is past the lost one
    server.set_price("BTCUSDT", Decimal("61000"))
    send(venue, Side.BUY, "0.005")
    fills_record(venue=venue, symbol="BTCUSDT")
    assert Position.objects.get(symbol="BTCUSDT").quantity == Decimal("0.005")

    # when reconciling
    report = reconcile(venue=venue, symbols=SYMBOLS)

    # then the order has the venue's state, its fill is recorded, and the books agree
    lost.refresh_from_db()
    assert lost.status == Order.Status.FILLED
    assert lost.filled_quantity == Decimal("0.010")
    assert Fill.objects.filter(order=lost).count() == 1
    assert report.unknown_resolved == 1
    assert report.fills_recorded == 1
    assert Position.objects.get(symbol="BTCUSDT").quantity == Decimal("0.015")
    assert server.position("BTCUSDT").amount == Decimal("0.015")
    assert report.clean, report.differences
    assert len(server.accepted_orders) == 2  # nothing was sent again


def test_open_orders_that_filled_or_were_cancelled_on_the_venue_take_its_final_state(
    server: BinanceTestServer, client: Any, venue: BinanceFutures
) -> None:
    # given two resting orders of ours; one fills, the other is cancelled on the venue
    fills = send(venue, Side.BUY, "0.010", price="59000")
    cancelled = send(venue, Side.BUY, "0.010", price="55000")
    assert fills.status == cancelled.status == Order.Status.OPEN
    server.set_price("BTCUSDT", Decimal("58900"))
    client.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=cancelled.client_order_id)

    # when reconciling
    report = reconcile(venue=venue, symbols=SYMBOLS)

    # then both are final here, the fill is recorded and the position is the venue's
    fills.refresh_from_db()
    cancelled.refresh_from_db()
    assert (fills.status, fills.filled_quantity) == (Order.Status.FILLED, Decimal("0.010"))
    assert cancelled.status == Order.Status.CANCELED
    assert report.orders_adopted == 2
    assert Fill.objects.get().order == fills
    assert Position.objects.get(symbol="BTCUSDT").quantity == server.position("BTCUSDT").amount
    assert report.position_differences == 0
    assert open_incident("order_adopted") is not None


def test_a_venue_order_unknown_to_us_is_cancelled_and_ours_keep_working(
    server: BinanceTestServer, client: Any, venue: BinanceFutures
) -> None:
    # given a resting order of ours and one placed by hand on the same account
    ours = send(venue, Side.BUY, "0.010", price="55000")
    by_hand(client, "by-hand-1", "BUY", "0.010", price="50000")

    # when reconciling
    report = reconcile(venue=venue, symbols=SYMBOLS)

    # then only the foreign order is cancelled, and it is reported
    assert [o.client_order_id for o in server.open_orders()] == [ours.client_order_id]
    ours.refresh_from_db()
    assert ours.status == Order.Status.OPEN
    assert report.orders_canceled == 1
    assert any("by-hand-1" in d and "cancelled" in d for d in report.differences)
    incident = open_incident("foreign_order")
    assert incident is not None
    assert "by-hand-1" in incident.message
    assert not Order.objects.filter(client_order_id="by-hand-1").exists()


def test_a_persisting_position_difference_halts_the_symbol_until_a_person_lifts_it(
    client: Any, venue: BinanceFutures
) -> None:
    # given a traded symbol and a position opened by hand on the venue (not in our books)
    instrument()
    by_hand(client, "by-hand-2", "BUY", "0.010")

    # when reconciling, the difference is reported on each run but halts only on the third
    for run in (1, 2):
        report = reconcile(venue=venue, symbols=SYMBOLS, persist_after=3)
        assert report.position_differences == 1
        assert "BTCUSDT position is 0 here but 0.01 on the venue" in report.differences
        assert symbol_halted("BTCUSDT") == ""
        assert report.symbols_halted == []
        incident = open_incident("position_BTCUSDT")
        assert incident is not None
        assert incident.occurrences == run
    report = reconcile(venue=venue, symbols=SYMBOLS, persist_after=3)

    # then the symbol is halted (fail closed), with the reason
    assert report.symbols_halted == ["BTCUSDT"]
    assert "0.01 on the venue" in symbol_halted("BTCUSDT")
    halt = open_incident("halted_BTCUSDT")
    assert halt is not None
    assert halt.severity == Incident.Severity.CRITICAL

    # when the venue agrees again (the position is closed by hand)
    by_hand(client, "by-hand-3", "SELL", "0.010", reduceOnly="true")
    report = reconcile(venue=venue, symbols=SYMBOLS, persist_after=3)

    # then the difference is resolved but the halt stays until a person lifts it
    assert report.clean, report.differences
    assert open_incident("position_BTCUSDT") is None
    assert symbol_halted("BTCUSDT") != ""
    symbol_unhalt(symbol="BTCUSDT", actor="alice", note="hand trade closed")
    assert symbol_halted("BTCUSDT") == ""
    assert open_incident("halted_BTCUSDT") is None
    lifted = Incident.objects.get(component="reconcile", code="halted_BTCUSDT")
    assert lifted.context["lifted_by"] == "alice"


def test_a_difference_that_goes_away_restarts_the_count(client: Any, venue: BinanceFutures) -> None:
    instrument()
    by_hand(client, "by-hand-4", "BUY", "0.010")
    reconcile(venue=venue, symbols=SYMBOLS, persist_after=2)
    by_hand(client, "by-hand-5", "SELL", "0.010", reduceOnly="true")
    reconcile(venue=venue, symbols=SYMBOLS, persist_after=2)
    by_hand(client, "by-hand-6", "BUY", "0.010")

    report = reconcile(venue=venue, symbols=SYMBOLS, persist_after=2)

    assert report.position_differences == 1
    assert symbol_halted("BTCUSDT") == ""  # not two consecutive runs


def test_a_wallet_difference_beyond_the_tolerance_is_reported_but_halts_nothing(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    instrument()
    nav_record(venue=venue, at=datetime.now(UTC) - timedelta(seconds=5))
    server.transfer(Decimal("500"))  # money arrived that the books do not know of yet

    report = reconcile(venue=venue, symbols=SYMBOLS)

    assert report.balance_difference == "500"
    assert open_incident("balance") is not None
    assert symbol_halted("BTCUSDT") == ""
    # once the transfer is booked as a cash flow, the wallet agrees again
    CashFlow.objects.create(
        at=datetime.now(UTC), kind=CashFlow.Kind.TRANSFER, amount=Decimal("500"), venue_id="t-1"
    )
    assert reconcile(venue=venue, symbols=SYMBOLS).clean
    assert open_incident("balance") is None


def test_the_task_is_skipped_while_an_executor_tick_holds_the_lock() -> None:
    skipped = skipped_count("executor-tick")
    with single_flight("executor-tick", ttl_seconds=30) as tick:
        assert tick.acquired
        assert reconcile_run_once() is None
    assert skipped_count("executor-tick") == skipped + 1


def test_the_scheduled_task_tries_again_between_ticks_then_leaves_it_to_the_next_run() -> None:
    # given a tick that holds the lock throughout
    skipped = skipped_count("executor-tick")
    with single_flight("executor-tick", ttl_seconds=30) as tick:
        assert tick.acquired
        # when the scheduled task runs (eagerly: each retry runs at once, not 3 s later)
        result = reconcile_task.apply()
    # then it was tried again and again, about a minute's worth, before leaving it to the
    # next scheduled run (without failing)
    assert skipped_count("executor-tick") == skipped + 1 + RECONCILE_RETRIES
    assert result.state == "SUCCESS"


def test_the_task_runs_on_the_default_queue() -> None:
    route = app.amqp.router.route({}, reconcile_task.name)
    assert route["queue"].name == "default"


def test_the_paper_venue_has_nothing_to_repair_after_executor_ticks(settings: Any) -> None:
    # given a few executor ticks that traded on the paper venue
    settings.VENUE = "paper"
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    signal_sources_sync()
    for source in SignalSource.objects.all():
        eager = {"threshold": 0.05} if source.name == "momentum" else {"entry_z": 0.2}
        source.params = {**source.params, **eager}
        source.save()
    t0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
    for minute in range(4):
        assert executor_run_once(now=t0 + timedelta(minutes=minute)) is not None
    assert Order.objects.filter(status=Order.Status.FILLED).exists()
    assert Position.objects.exclude(quantity=0).exists()

    # when reconciling through the same venue session
    report = reconcile_run_once(now=t0 + timedelta(minutes=3, seconds=10))

    # then nothing differs and nothing was repaired
    assert report is not None
    assert report["differences"] == []
    assert report["orders_adopted"] == report["orders_canceled"] == 0
    assert report["fills_recorded"] == 0
    assert not Incident.objects.filter(component="reconcile").exists()


def test_a_protective_stop_that_triggered_on_the_venue_is_adopted_with_its_fill(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    # given a long position protected by a reduce-only stop resting on the venue
    send(venue, Side.BUY, "0.010")
    fills_record(venue=venue, symbol="BTCUSDT")
    stop = order_send(
        order=order_create(
            symbol="BTCUSDT",
            side=Side.SELL,
            quantity=Decimal("0.010"),
            type=Order.Type.STOP_MARKET,
            purpose=Order.Purpose.STOP,
            stop_price=Decimal("58000"),
            reduce_only=True,
        ),
        venue=venue,
    )
    assert stop.status == Order.Status.OPEN
    # when the market falls through it while nobody is looking
    server.set_price("BTCUSDT", Decimal("57900"))

    report = reconcile(venue=venue, symbols=SYMBOLS)

    # then the stop is filled here too, its fill recorded, and the books are flat like the venue
    stop.refresh_from_db()
    assert (stop.status, stop.filled_quantity) == (Order.Status.FILLED, Decimal("0.010"))
    assert Fill.objects.filter(order=stop).count() == 1
    assert Position.objects.get(symbol="BTCUSDT").quantity == 0 == server.position("BTCUSDT").amount
    assert report.position_differences == 0
    assert report.orders_canceled == 0


def test_an_operator_unhalts_a_symbol_from_the_admin_with_a_reason(
    client: Any, django_user_model: Any
) -> None:
    from django.contrib.auth.models import Group
    from django.test import Client as DjangoClient

    from routing.models import Instrument

    Instrument.objects.create(
        symbol="BTCUSDT",
        tick_size=1,
        step_size=1,
        min_qty=1,
        max_qty=10,
        min_notional=5,
        trading_halted=True,
        halt_reason="position differs",
    )
    user = django_user_model.objects.create_user("ops", password="a-long-secret-7", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    browser = DjangoClient()
    browser.force_login(user)
    row = Instrument.objects.get()

    browser.post(
        "/admin/routing/instrument/",
        {
            "action": "symbol_unhalt",
            "_selected_action": [row.pk],
            "confirm": "yes",
            "reason": "checked by hand",
        },
    )

    row.refresh_from_db()
    assert not row.trading_halted
