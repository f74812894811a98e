"""Protective stops, cancelling entries on halt, and flatten: through python-binance's real HTTP
stack against the local Binance test server (stops on its algo-order service), and once on the
paper venue."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from risk.limits import Side
from risk.models import RiskLimit, RiskState
from risk.services import risk_halt, risk_state_load
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record
from routing.models import Order, Position
from routing.orders import order_create, order_send
from routing.paper import PaperVenue, paper_venue_for
from routing.protection import entries_cancel, flatten, stops_maintain, stops_refresh
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures, Venue, VenueStatus
from tradingsite.guard import GuardContext, binance_client_for_writing

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

DISTANCE = Decimal("0.05")
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(autouse=True)
def trading(global_limits: RiskLimit) -> None:
    """A risk state that lets orders through and the kill switch off."""
    risk_state_load(initial_nav=Decimal("100000"))
    RiskLimit.objects.filter(symbol="").update(kill_switch=False)


def trade(venue: Venue, side: Side, quantity: str, symbol: str = "BTCUSDT") -> Order:
    """A market order, sent and its fills recorded (so the local position follows the venue)."""
    order = order_send(
        order=order_create(symbol=symbol, side=side, quantity=Decimal(quantity)), venue=venue
    )
    assert order.status == Order.Status.FILLED, order.last_error
    fills_record(venue=venue, symbol=symbol)
    return order


def open_stops(server: BinanceTestServer, symbol: str = "BTCUSDT") -> list[Any]:
    return [a for a in server.algo_orders if a.is_open and a.symbol == symbol]


def local_stops(**filters: Any) -> list[Order]:
    return list(Order.objects.filter(purpose=Order.Purpose.STOP, **filters).order_by("id"))


class TestAStopProtectsEachPosition:
    def test_a_long_gets_one_reduce_only_sell_stop_at_the_distance_below_its_entry(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        # given a long 0.010 BTC entered at 60123.4
        server.set_price("BTCUSDT", "60123.4")
        trade(venue, Side.BUY, "0.010")

        # when the stops are maintained
        placed = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

        # then one stop rests on the algo service: 60123.4 x 0.95 = 57117.23, rounded to the
        # tick towards the entry (the loss never exceeds the distance)
        [stop] = placed
        [algo] = open_stops(server)
        assert (algo.side, algo.order_type, algo.quantity) == (
            "SELL",
            "STOP_MARKET",
            Decimal("0.010"),
        )
        assert algo.trigger_price == Decimal("57117.3")
        assert (algo.reduce_only, algo.close_position) == (True, False)
        assert algo.working_type == "MARK_PRICE"
        # under the order's own client id, recorded as a working stop
        assert algo.client_algo_id == stop.client_order_id
        assert (stop.status, stop.purpose, stop.type) == ("open", "stop", "STOP_MARKET")
        assert stop.stop_price == Decimal("57117.3")
        assert stop.reduce_only
        assert stop.venue_order_id == str(algo.algo_id)
        # and the venue lists it among the open orders
        [listed] = venue.open_orders()
        assert (listed.client_order_id, listed.status) == (stop.client_order_id, VenueStatus.NEW)
        assert open_stops(server, "ETHUSDT") == []

    def test_a_short_gets_a_buy_stop_above_its_entry(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        server.set_price("BTCUSDT", "60123.4")
        trade(venue, Side.SELL, "0.010")

        stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

        # 60123.4 x 1.05 = 63129.57, rounded down to the tick (towards the entry)
        [algo] = open_stops(server)
        assert (algo.side, algo.trigger_price, algo.reduce_only) == (
            "BUY",
            Decimal("63129.5"),
            True,
        )

    def test_maintaining_again_places_nothing(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        trade(venue, Side.BUY, "0.010")
        stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
        accepted = len(server.accepted_orders)

        assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []
        assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []

        assert len(server.accepted_orders) == accepted
        assert len(open_stops(server)) == 1
        assert len(local_stops(status=Order.Status.OPEN)) == 1

    def test_the_stop_moves_when_the_position_grows_and_goes_when_it_is_flat(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        # given a long 0.010 at 60000 with its stop at 57000
        trade(venue, Side.BUY, "0.010")
        [first] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
        assert first.stop_price == Decimal("57000.0")

        # when it grows by 0.010 at 61000 (entry 60500)
        server.set_price("BTCUSDT", "61000")
        trade(venue, Side.BUY, "0.010")
        [second] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

        # then one stop covers the whole position at 60500 x 0.95, and the old one is cancelled
        [algo] = open_stops(server)
        assert (algo.quantity, algo.trigger_price) == (Decimal("0.020"), Decimal("57475.0"))
        assert algo.client_algo_id == second.client_order_id
        first.refresh_from_db()
        assert first.status == Order.Status.CANCELED
        assert [s.client_order_id for s in local_stops(status=Order.Status.OPEN)] == [
            second.client_order_id
        ]

        # when the position is closed, its stop is cancelled and none is placed
        trade(venue, Side.SELL, "0.020")
        assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []
        assert open_stops(server) == []
        second.refresh_from_db()
        assert second.status == Order.Status.CANCELED

    def test_a_stop_cancelled_on_the_venue_is_replaced(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        trade(venue, Side.BUY, "0.010")
        [first] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
        # someone cancels it on the exchange
        venue.cancel(symbol="BTCUSDT", client_order_id=first.client_order_id)

        [second] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

        first.refresh_from_db()
        assert first.status == Order.Status.CANCELED
        [algo] = open_stops(server)
        assert algo.client_algo_id == second.client_order_id


def test_the_stop_triggers_on_the_venue_and_closes_the_position(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    # given a long 0.010 at 60000 protected at 57000
    trade(venue, Side.BUY, "0.010")
    [stop] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

    # when the market falls through the stop while nothing here runs
    server.set_price("BTCUSDT", "56900")

    # then the exchange closed the position by itself
    assert server.position("BTCUSDT").amount == 0
    [algo] = server.algo_orders
    assert algo.status == "FINISHED"
    # and the next tick learns it: the stop is filled, by the order its trades carry
    stops_refresh(venue=venue, symbols=SYMBOLS)
    stop.refresh_from_db()
    assert stop.status == Order.Status.FILLED
    assert stop.filled_quantity == Decimal("0.010")
    assert stop.venue_order_id == str(algo.actual_order_id)
    # so the fills step books the exit against the stop, and the position is flat
    [fill] = fills_record(venue=venue, symbol="BTCUSDT")
    assert (fill.order_id, fill.side, fill.price) == (stop.pk, "SELL", Decimal("56900"))
    assert Position.objects.get(symbol="BTCUSDT").quantity == 0
    # and no new stop is placed
    assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []
    assert open_stops(server) == []


def test_a_stop_that_fired_is_not_replaced_before_its_fills_are_booked(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    trade(venue, Side.BUY, "0.010")
    stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
    server.set_price("BTCUSDT", "56900")

    # the local position still says long (its fills are not booked yet)
    assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []
    assert len(server.algo_orders) == 1


def test_on_halt_entries_are_cancelled_and_the_stop_stays(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    # given a protected long and a resting limit entry
    trade(venue, Side.BUY, "0.010")
    [stop] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
    entry = order_send(
        order=order_create(
            symbol="BTCUSDT",
            side=Side.BUY,
            quantity=Decimal("0.010"),
            type=Order.Type.LIMIT,
            price=Decimal("50000"),
        ),
        venue=venue,
    )
    assert entry.status == Order.Status.OPEN

    # when trading is halted and the entries are cancelled
    risk_halt(reason="daily loss", actor="test")
    assert entries_cancel(venue=venue) == 1

    # then the entry is cancelled here and on the venue, and the stop still protects
    entry.refresh_from_db()
    assert entry.status == Order.Status.CANCELED
    assert server.open_orders("BTCUSDT") == []
    [algo] = open_stops(server)
    assert algo.client_algo_id == stop.client_order_id
    stop.refresh_from_db()
    assert stop.status == Order.Status.OPEN
    # and a second run finds nothing more to cancel
    assert entries_cancel(venue=venue) == 0


class TestFlatten:
    def test_it_closes_every_position_while_halted_with_the_kill_switch_on(
        self, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        # given a long BTC and a short ETH, both protected
        trade(venue, Side.BUY, "0.010")
        trade(venue, Side.SELL, "0.100", symbol="ETHUSDT")
        stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)
        # and trading halted with the kill switch on
        risk_halt(reason="operator", actor="test")
        RiskLimit.objects.filter(symbol="").update(kill_switch=True)
        assert RiskState.objects.get().halted

        orders = flatten(venue=venue, symbols=SYMBOLS, actor="olive", reason="end of test")

        # then reduce-only market orders closed both positions
        assert sorted((o.symbol, o.side, o.quantity, o.status) for o in orders) == [
            ("BTCUSDT", "SELL", Decimal("0.010"), "filled"),
            ("ETHUSDT", "BUY", Decimal("0.100"), "filled"),
        ]
        assert all(o.reduce_only and o.purpose == Order.Purpose.FLATTEN for o in orders)
        assert server.position("BTCUSDT").amount == 0
        assert server.position("ETHUSDT").amount == 0
        # and the stops, protecting nothing now, are cancelled
        assert open_stops(server) == []
        assert open_stops(server, "ETHUSDT") == []
        assert local_stops(status=Order.Status.OPEN) == []

    def test_it_needs_a_reason(self, venue: BinanceFutures) -> None:
        with pytest.raises(ValueError, match="reason"):
            flatten(venue=venue, symbols=SYMBOLS, actor="olive", reason="  ")


@pytest.fixture
def binance_settings(server: BinanceTestServer, settings: Any) -> Any:
    """Settings under which ``venue_session()`` trades on the test server."""
    settings.VENUE = "binance"
    settings.BINANCE_FUTURES_URL = server.url
    settings.BINANCE_API_KEY = server.api_key
    settings.BINANCE_API_SECRET = server.api_secret
    settings.SYMBOLS = list(SYMBOLS)
    return settings


class TestFlattenCommand:
    def test_it_closes_the_positions_and_prints_what_it_sent(
        self, server: BinanceTestServer, venue: BinanceFutures, binance_settings: Any
    ) -> None:
        trade(venue, Side.BUY, "0.010")
        out = StringIO()

        call_command("flatten", "--reason", "manual test", stdout=out)

        assert server.position("BTCUSDT").amount == 0
        [order] = Order.objects.filter(purpose=Order.Purpose.FLATTEN)
        assert f"SELL 0.010 BTCUSDT reduce-only market {order.client_order_id}: filled" in (
            out.getvalue()
        )

    @pytest.mark.parametrize(
        ("allow_prod_writes", "flag"), [(False, False), (True, False), (False, True)]
    )
    def test_in_production_it_refuses_without_both_allows_and_changes_nothing(
        self,
        server: BinanceTestServer,
        venue: BinanceFutures,
        binance_settings: Any,
        allow_prod_writes: bool,
        flag: bool,
    ) -> None:
        trade(venue, Side.BUY, "0.010")
        orders_before = Order.objects.count()
        binance_settings.ENV = "prod"
        binance_settings.ALLOW_PROD_WRITES = allow_prod_writes
        args = ["flatten", "--reason", "in prod"] + (["--allow-prod"] if flag else [])

        with pytest.raises(CommandError, match="overwrites production state"):
            call_command(*args, stdout=StringIO())

        assert server.position("BTCUSDT").amount == Decimal("0.010")
        assert Order.objects.count() == orders_before


class TestAnUnknownStopSubmission:
    @pytest.fixture
    def impatient_venue(self, server: BinanceTestServer, settings: Any) -> BinanceFutures:
        """A venue whose HTTP timeout is shorter than the server's held answers."""
        settings.BINANCE_API_KEY = server.api_key
        settings.BINANCE_API_SECRET = server.api_secret
        settings.BINANCE_HTTP_TIMEOUT = 0.3
        client = binance_client_for_writing(
            context=GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
        )
        return BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))

    def test_it_is_resolved_by_its_client_id_and_not_sent_twice(
        self, server: BinanceTestServer, impatient_venue: BinanceFutures
    ) -> None:
        trade(impatient_venue, Side.BUY, "0.010")
        # the server accepts the stop but its answer never arrives
        server.faults.push(
            "accepted_then_timeout", method="POST", path="/fapi/v1/algoOrder", delay=0.8
        )

        [stop] = stops_maintain(venue=impatient_venue, symbols=SYMBOLS, distance=DISTANCE)

        assert server.faults.injected == [("POST", "/fapi/v1/algoOrder", "accepted_then_timeout")]
        assert stop.status == Order.Status.OPEN
        [algo] = server.algo_orders
        assert algo.client_algo_id == stop.client_order_id
        assert stops_maintain(venue=impatient_venue, symbols=SYMBOLS, distance=DISTANCE) == []
        assert len(server.algo_orders) == 1

    def test_a_stop_still_unknown_is_found_after_a_restart_instead_of_doubled(
        self, server: BinanceTestServer, impatient_venue: BinanceFutures, client: Any
    ) -> None:
        trade(impatient_venue, Side.BUY, "0.010")
        # accepted, the answer lost, and every status query failing too
        server.faults.push(
            "accepted_then_timeout", method="POST", path="/fapi/v1/algoOrder", delay=0.8
        )
        server.faults.push("server_error", method="GET", path="/fapi/v1/algoOrder", count=5)
        [stop] = stops_maintain(venue=impatient_venue, symbols=SYMBOLS, distance=DISTANCE)
        assert stop.status == Order.Status.UNKNOWN

        # a fresh adapter (after a restart) asks the regular service first, then the algo one
        restarted = BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))
        assert stops_maintain(venue=restarted, symbols=SYMBOLS, distance=DISTANCE) == []

        stop.refresh_from_db()
        assert stop.status == Order.Status.OPEN
        assert [a.client_algo_id for a in server.algo_orders] == [stop.client_order_id]


class TestOnThePaperVenue:
    class Clock:
        def __init__(self) -> None:
            self.ms = 1_767_225_600_000

        def __call__(self) -> int:
            return self.ms

    def test_a_position_gets_its_stop_and_flatten_closes_it(self) -> None:
        clock = self.Clock()
        venue: PaperVenue = paper_venue_for(list(SYMBOLS), seed=7, clock_ms=clock, name="stops")
        trade(venue, Side.BUY, "0.010")
        entry = Position.objects.get(symbol="BTCUSDT").entry_price

        [stop] = stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE)

        assert stop.status == Order.Status.OPEN
        assert stop.stop_price is not None
        assert entry * (1 - DISTANCE) <= stop.stop_price < entry * (1 - DISTANCE) + Decimal("0.1")
        [resting] = venue.open_orders()
        assert resting.client_order_id == stop.client_order_id
        assert stops_maintain(venue=venue, symbols=SYMBOLS, distance=DISTANCE) == []

        clock.ms += 60_000
        [closing] = flatten(venue=venue, symbols=SYMBOLS, actor="test", reason="paper test")

        assert closing.status == Order.Status.FILLED
        assert venue.positions() == {}
        assert venue.open_orders() == []
        stop.refresh_from_db()
        assert stop.status == Order.Status.CANCELED
