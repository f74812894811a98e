"""The paper venue: fills after the decision, Binance's rules, funding, persistence, replay."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from risk.limits import Side
from routing.accounting import FLAT, PositionState, fill_applied, funding_applied
from routing.models import PaperAccount
from routing.paper import (
    PaperBookConflict,
    PaperSymbol,
    PaperVenue,
    paper_config_for,
    paper_venue_for,
)
from routing.resilience import OrderNotFound, VenueRejected
from routing.synthetic import SyntheticMarket
from routing.venues import Venue, VenueBar, VenueOrder, VenueStatus

pytestmark = pytest.mark.django_db

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: on every funding boundary
STEP_MS = 5_000
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BTC_TICK = Decimal("0.1")


class Clock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def tick(self, ms: int) -> None:
        self.ms += ms


def paper(clock: Clock, *, seed: int = 7, name: str = "test", **settings: Any) -> PaperVenue:
    return paper_venue_for(SYMBOLS, seed=seed, clock_ms=clock, name=name, **settings)


def reference_market(*, seed: int = 7) -> SyntheticMarket:
    """The same market as the venue's, built independently of it."""
    config = paper_config_for(SYMBOLS, seed=seed)
    return SyntheticMarket(
        prices={s: spec.start_price for s, spec in config.symbols.items()},
        tick_sizes={s: spec.tick_size for s, spec in config.symbols.items()},
        seed=seed,
    )


def worse(price: Decimal, side: Side, bps: Decimal, tick: Decimal = BTC_TICK) -> Decimal:
    if side is Side.BUY:
        return (price * (1 + bps / 10_000) / tick).to_integral_value(ROUND_CEILING) * tick
    return (price * (1 - bps / 10_000) / tick).to_integral_value(ROUND_FLOOR) * tick


def market(cid: str, side: Side, qty: str, *, reduce_only: bool = False) -> VenueOrder:
    return VenueOrder(cid, "BTCUSDT", side, "MARKET", Decimal(qty), reduce_only=reduce_only)


def limit(cid: str, side: Side, qty: str, price: Decimal) -> VenueOrder:
    return VenueOrder(cid, "BTCUSDT", side, "LIMIT", Decimal(qty), price=price)


def stop(cid: str, side: Side, qty: str, stop_price: Decimal) -> VenueOrder:
    return VenueOrder(
        cid, "BTCUSDT", side, "STOP_MARKET", Decimal(qty), stop_price=stop_price, reduce_only=True
    )


def rejection_code(error: pytest.ExceptionInfo[VenueRejected]) -> int | None:
    return error.value.code


class TestMarketOrders:
    def test_a_market_buy_fills_at_the_next_step_plus_slippage(self) -> None:
        # given a venue and the same market built independently
        clock = Clock()
        venue = paper(clock, slippage_bps=Decimal("5"))
        reference = reference_market()
        decision_price = venue.mark_prices()["BTCUSDT"]
        assert decision_price == reference.price("BTCUSDT")
        # when the decision is sent as a market buy
        state = venue.submit(market("buy-1", Side.BUY, "0.010"))
        # then it fills at the market's next price, worse by 5 bps, not at the decision's
        next_price = reference.advance("BTCUSDT")
        assert next_price != decision_price
        assert state.status is VenueStatus.FILLED
        assert state.executed_quantity == Decimal("0.010")
        assert state.average_price == worse(next_price, Side.BUY, Decimal("5"))
        assert state.average_price > next_price
        [trade] = venue.trades(symbol="BTCUSDT", since_ms=0)
        assert trade.price == state.average_price
        assert trade.time_ms == T0 + STEP_MS  # the first step after the decision

    def test_a_market_sell_receives_less_than_the_next_price(self) -> None:
        venue = paper(Clock(), slippage_bps=Decimal("5"))
        reference = reference_market()
        state = venue.submit(market("sell-1", Side.SELL, "0.010"))
        next_price = reference.advance("BTCUSDT")
        assert state.average_price == worse(next_price, Side.SELL, Decimal("5"))
        assert state.average_price < next_price

    def test_orders_decided_at_one_moment_all_fill_at_the_first_price_after_it(self) -> None:
        clock = Clock()
        venue = paper(clock, slippage_bps=Decimal(0))
        reference = reference_market()
        first = venue.submit(market("a", Side.BUY, "0.002"))
        second = venue.submit(market("b", Side.SELL, "0.002"))
        # the second order is not filled at a later step because the first one came first
        assert first.average_price == second.average_price == reference.advance("BTCUSDT")
        # an order decided after that step meets the one after it
        clock.tick(STEP_MS)
        third = venue.submit(market("c", Side.BUY, "0.002"))
        assert third.average_price == reference.advance("BTCUSDT")
        times = [trade.time_ms for trade in venue.trades(symbol="BTCUSDT", since_ms=0)]
        assert times == [T0 + STEP_MS, T0 + STEP_MS, T0 + 2 * STEP_MS]

    def test_the_fee_is_the_notional_times_the_taker_fee(self) -> None:
        venue = paper(Clock(), taker_fee=Decimal("0.0004"))
        venue.submit(market("buy-1", Side.BUY, "0.020"))
        [trade] = venue.trades(symbol="BTCUSDT", since_ms=0)
        assert trade.fee == Decimal("0.020") * trade.price * Decimal("0.0004")
        assert trade.fee > 0


def test_position_and_wallet_equal_the_accounting_of_the_trades() -> None:
    # given opens, adds, a partial reduce and a flip at different times
    clock = Clock()
    venue = paper(clock, starting_wallet=Decimal("20000"))
    for n, (side, qty) in enumerate(
        [(Side.BUY, "0.050"), (Side.BUY, "0.030"), (Side.SELL, "0.020"), (Side.SELL, "0.100")]
    ):
        venue.submit(market(f"o-{n}", side, qty))
        clock.tick(7 * 60_000)
    # when the trades are replayed through the accounting independently
    position = FLAT
    for trade in venue.trades(symbol="BTCUSDT", since_ms=0):
        position, realized = fill_applied(
            position, side=trade.side, quantity=trade.quantity, price=trade.price, fee=trade.fee
        )
        assert realized == trade.realized_pnl
    # then the venue's books are the same to the last digit
    assert position.quantity == Decimal("-0.040")
    assert venue.position_states()["BTCUSDT"] == position
    assert venue.positions() == {"BTCUSDT": Decimal("-0.040")}
    assert venue.wallet_balance() == Decimal("20000") + position.realized_pnl - position.fees


class TestClientOrderIds:
    def test_an_id_is_refused_while_its_order_is_open_and_accepted_once_it_is_not(self) -> None:
        venue = paper(Clock())
        far_below = Decimal("30000.0")
        venue.submit(limit("same", Side.BUY, "0.004", far_below))
        with pytest.raises(VenueRejected) as refused:
            venue.submit(limit("same", Side.BUY, "0.004", far_below))
        assert rejection_code(refused) == -4116
        cancelled = venue.cancel(symbol="BTCUSDT", client_order_id="same")
        assert cancelled.status is VenueStatus.CANCELED
        again = venue.submit(market("same", Side.BUY, "0.002"))
        assert again.status is VenueStatus.FILLED
        assert again.venue_order_id != cancelled.venue_order_id
        # filled, so the id is free again; a query answers for the latest order with it
        venue.submit(market("same", Side.SELL, "0.002"))
        assert venue.query(symbol="BTCUSDT", client_order_id="same").status is VenueStatus.FILLED

    def test_a_query_of_an_unknown_id_raises_order_not_found(self) -> None:
        venue = paper(Clock())
        with pytest.raises(OrderNotFound) as missing:
            venue.query(symbol="BTCUSDT", client_order_id="never-sent")
        assert missing.value.code == -2013

    def test_cancelling_an_unknown_or_finished_order_is_refused(self) -> None:
        venue = paper(Clock())
        with pytest.raises(VenueRejected) as unknown:
            venue.cancel(symbol="BTCUSDT", client_order_id="never-sent")
        assert rejection_code(unknown) == -2011
        venue.submit(market("done", Side.BUY, "0.002"))
        with pytest.raises(VenueRejected) as finished:
            venue.cancel(symbol="BTCUSDT", client_order_id="done")
        assert rejection_code(finished) == -2011

    def test_open_orders_lists_resting_orders_only(self) -> None:
        venue = paper(Clock())
        venue.submit(market("filled", Side.BUY, "0.002"))
        venue.submit(limit("resting", Side.BUY, "0.004", Decimal("30000.0")))
        venue.submit(stop("protect", Side.SELL, "0.002", Decimal("50000.0")))
        assert [o.client_order_id for o in venue.open_orders()] == ["resting", "protect"]
        assert all(o.status is VenueStatus.NEW for o in venue.open_orders())


class TestRefusals:
    def test_an_order_below_the_minimum_notional_is_refused_unless_reduce_only(self) -> None:
        venue = paper(Clock())
        with pytest.raises(VenueRejected) as small:
            venue.submit(market("tiny", Side.BUY, "0.001"))  # ~60 USDT, BTC's minimum is 100
        assert rejection_code(small) == -4164
        venue.submit(market("open", Side.BUY, "0.002"))
        closed = venue.submit(market("tiny-close", Side.SELL, "0.001", reduce_only=True))
        assert closed.status is VenueStatus.FILLED

    def test_the_filters_are_reported_like_exchange_info(self) -> None:
        filters = paper(Clock()).exchange_filters()
        assert set(filters) == set(SYMBOLS)
        assert filters["BTCUSDT"].tick_size == BTC_TICK
        assert filters["BTCUSDT"].step_size == Decimal("0.001")
        assert filters["BTCUSDT"].min_notional == Decimal("100")

    def test_a_reduce_only_order_that_would_increase_the_position_is_refused(self) -> None:
        venue = paper(Clock())
        with pytest.raises(VenueRejected) as flat:
            venue.submit(market("r-1", Side.SELL, "0.002", reduce_only=True))
        assert rejection_code(flat) == -2022
        venue.submit(market("open", Side.BUY, "0.010"))
        with pytest.raises(VenueRejected) as adding:
            venue.submit(market("r-2", Side.BUY, "0.002", reduce_only=True))
        assert rejection_code(adding) == -2022
        with pytest.raises(OrderNotFound):
            venue.query(symbol="BTCUSDT", client_order_id="r-2")

    def test_a_reduce_only_order_larger_than_the_position_only_closes_it(self) -> None:
        venue = paper(Clock())
        venue.submit(market("open", Side.BUY, "0.010"))
        state = venue.submit(market("close", Side.SELL, "0.025", reduce_only=True))
        assert state.executed_quantity == Decimal("0.010")
        assert state.status is VenueStatus.EXPIRED  # the rest is cancelled, as on Binance
        assert venue.positions() == {}

    def test_an_order_beyond_the_available_margin_is_refused(self) -> None:
        venue = paper(Clock(), starting_wallet=Decimal("1000"), leverage=Decimal("5"))
        with pytest.raises(VenueRejected) as refused:
            venue.submit(market("big", Side.BUY, "0.100"))  # ~6000 USDT: 1200 initial margin
        assert rejection_code(refused) == -2019
        assert venue.trades(symbol="BTCUSDT", since_ms=0) == []
        with pytest.raises(OrderNotFound):
            venue.query(symbol="BTCUSDT", client_order_id="big")
        assert venue.submit(market("small", Side.BUY, "0.050")).status is VenueStatus.FILLED
        # the margin the position holds counts: another 0.05 no longer fits
        with pytest.raises(VenueRejected) as again:
            venue.submit(market("more", Side.BUY, "0.050"))
        assert rejection_code(again) == -2019

    def test_a_stop_that_would_trigger_at_once_is_refused(self) -> None:
        venue = paper(Clock())
        venue.submit(market("open", Side.BUY, "0.010"))
        above = venue.mark_prices()["BTCUSDT"] + 100
        with pytest.raises(VenueRejected) as refused:
            venue.submit(stop("s", Side.SELL, "0.010", above))
        assert rejection_code(refused) == -2021


def test_a_stop_triggers_on_the_step_that_crosses_it() -> None:
    # given a long with a protective stop 0.2 % below the market
    clock = Clock()
    venue = paper(clock, slippage_bps=Decimal("3"))
    reference = reference_market()
    venue.submit(market("open", Side.BUY, "0.010"))
    entry_step = reference.advance("BTCUSDT")
    stop_price = (entry_step * Decimal("0.998") / BTC_TICK).to_integral_value(
        ROUND_FLOOR
    ) * BTC_TICK
    venue.submit(stop("protect", Side.SELL, "0.010", stop_price))
    # and the step at which the market's own path first reaches it
    path = reference.path("BTCUSDT", steps=5_000)
    crossing = next(n for n, price in enumerate(path) if price <= stop_price)
    crossing_ms = T0 + (crossing + 2) * STEP_MS  # path[0] is the step after the entry's
    # when time runs up to just before that step, the stop still rests
    clock.ms = crossing_ms
    assert venue.query(symbol="BTCUSDT", client_order_id="protect").status is VenueStatus.NEW
    # when the crossing step happens
    clock.ms = crossing_ms + 1
    state = venue.query(symbol="BTCUSDT", client_order_id="protect")
    # then it filled at that step's price, worse by the slippage, and the position is closed
    assert state.status is VenueStatus.FILLED
    stop_trade = venue.trades(symbol="BTCUSDT", since_ms=T0 + 2 * STEP_MS)[0]
    assert stop_trade.time_ms == crossing_ms
    assert stop_trade.price == worse(path[crossing], Side.SELL, Decimal("3"))
    assert venue.positions() == {}


def test_a_resting_limit_fills_at_its_price_as_maker_when_the_path_reaches_it() -> None:
    clock = Clock()
    venue = paper(clock, maker_fee=Decimal("0.0002"))
    limit_price = (Decimal("60000") * Decimal("0.999") / BTC_TICK).to_integral_value(
        ROUND_FLOOR
    ) * BTC_TICK
    assert venue.submit(limit("bid", Side.BUY, "0.010", limit_price)).status is VenueStatus.NEW
    path = reference_market().path("BTCUSDT", steps=5_000)
    reached = next(n for n, price in enumerate(path) if price <= limit_price)
    clock.ms = T0 + (reached + 1) * STEP_MS + 1
    [trade] = venue.trades(symbol="BTCUSDT", since_ms=0)
    assert (trade.price, trade.time_ms) == (limit_price, T0 + (reached + 1) * STEP_MS)
    assert trade.fee == Decimal("0.010") * limit_price * Decimal("0.0002")
    assert venue.query(symbol="BTCUSDT", client_order_id="bid").status is VenueStatus.FILLED


class TestFunding:
    def hourly(self, clock: Clock, rate: str) -> PaperVenue:
        hourly_btc = PaperSymbol(
            Decimal("60000"), BTC_TICK, Decimal("0.001"), funding_interval_hours=1
        )
        return paper(
            clock, overrides={"BTCUSDT": hourly_btc}, funding_rate=Decimal(rate), name="funding"
        )

    def test_a_long_pays_at_each_interval_at_the_mark_of_that_time(self) -> None:
        # given a long and hourly funding at +0.01 %
        clock = Clock()
        venue = self.hourly(clock, "0.0001")
        venue.submit(market("open", Side.BUY, "0.100"))
        reference = reference_market()
        path = reference.path("BTCUSDT", steps=3 * 720 + 1)  # path[0]: the entry's step
        # when three hours pass
        clock.ms = T0 + 3 * 3_600_000 + 1
        payments = venue.funding_payments(symbol="BTCUSDT", since_ms=0)
        # then it paid three times, at the price of the step at each funding time
        assert [p.time_ms for p in payments] == [T0 + h * 3_600_000 for h in (1, 2, 3)]
        position = FLAT
        position, _ = fill_applied(
            position,
            side=Side.BUY,
            quantity=Decimal("0.100"),
            price=venue.trades(symbol="BTCUSDT", since_ms=0)[0].price,
            fee=venue.trades(symbol="BTCUSDT", since_ms=0)[0].fee,
        )
        for hour, payment in zip((1, 2, 3), payments, strict=True):
            mark = path[hour * 720 - 1]
            assert payment.mark_price == mark
            position, expected = funding_applied(position, mark_price=mark, rate=Decimal("0.0001"))
            assert payment.amount == expected == -Decimal("0.100") * mark * Decimal("0.0001")
            assert payment.amount < 0
        assert venue.position_states()["BTCUSDT"] == position
        assert venue.wallet_balance() == (
            Decimal("10000") + position.realized_pnl - position.fees + position.funding
        )
        # and reports them as Binance's income does, once each
        income = venue.income(since_ms=0)
        assert [(i.kind, i.symbol, i.amount) for i in income] == [
            ("FUNDING_FEE", "BTCUSDT", p.amount) for p in payments
        ]
        assert len({i.income_id for i in income}) == 3
        assert venue.income(since_ms=payments[-1].time_ms + 1) == []

    def test_a_short_receives_a_positive_rate_and_pays_a_negative_one(self) -> None:
        clock = Clock()
        receives = self.hourly(clock, "0.0001")
        receives.submit(market("open", Side.SELL, "0.100"))
        clock.ms = T0 + 3_600_000 + 1
        assert receives.funding_payments(symbol="BTCUSDT", since_ms=0)[0].amount > 0
        clock = Clock()
        pays = self.hourly(clock, "-0.0001")
        pays.submit(market("open", Side.SELL, "0.100"))
        clock.ms = T0 + 3_600_000 + 1
        assert pays.funding_payments(symbol="BTCUSDT", since_ms=0)[0].amount < 0

    def test_nothing_is_charged_before_the_interval_or_when_flat(self) -> None:
        clock = Clock()
        venue = self.hourly(clock, "0.0001")
        venue.submit(market("open", Side.BUY, "0.100"))
        clock.ms = T0 + 3_600_000  # the funding time itself: not yet past
        assert venue.funding_payments(symbol="BTCUSDT", since_ms=0) == []
        clock.ms = T0 + 3_600_001
        venue.submit(market("close", Side.SELL, "0.100", reduce_only=True))
        clock.ms = T0 + 5 * 3_600_000
        assert [p.time_ms for p in venue.funding_payments(symbol="BTCUSDT", since_ms=0)] == [
            T0 + 3_600_000
        ]


class TestBars:
    def test_closed_bars_are_the_steps_of_each_closed_minute(self) -> None:
        clock = Clock(T0 + 1)
        venue = paper(clock)
        path = reference_market().path("BTCUSDT", steps=36)  # path[n]: T0 + (n + 1) steps
        clock.ms = T0 + 2 * 60_000 + 30_000
        bars = venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=0)
        # the minute in progress is not a closed bar
        assert [b.open_time_ms for b in bars] == [T0, T0 + 60_000]
        second = bars[1]
        minute = path[11:23]  # the steps at T0 + 60 s ... T0 + 115 s
        assert (second.open, second.close) == (minute[0], minute[-1])
        assert (second.high, second.low) == (max(minute), min(minute))
        assert second.close_time_ms == T0 + 2 * 60_000 - 1
        assert venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=T0 + 1) == [second]

    def test_longer_intervals_are_built_from_whole_minutes(self) -> None:
        clock = Clock()
        venue = paper(clock)
        clock.ms = T0 + 11 * 60_000
        minutes = venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=0)
        fives = venue.closed_bars(symbol="BTCUSDT", interval="5m", since_ms=0)
        assert [b.open_time_ms for b in fives] == [T0, T0 + 5 * 60_000]
        assert fives[1].open == minutes[5].open
        assert fives[1].close == minutes[9].close
        assert fives[1].high == max(b.high for b in minutes[5:10])
        with pytest.raises(VenueRejected):
            venue.closed_bars(symbol="BTCUSDT", interval="7m", since_ms=0)

    def test_history_is_bounded(self) -> None:
        clock = Clock()
        venue = paper(clock, bar_history=5)
        clock.ms = T0 + 30 * 60_000
        bars = venue.closed_bars(symbol="ETHUSDT", interval="1m", since_ms=0)
        assert [b.open_time_ms for b in bars] == [T0 + m * 60_000 for m in range(25, 30)]


def book(venue: PaperVenue) -> tuple[object, ...]:
    """Everything a caller can see of a venue."""
    return (
        venue.mark_prices(),
        venue.positions(),
        venue.wallet_balance(),
        venue.open_orders(),
        venue.trades(symbol="BTCUSDT", since_ms=0),
        venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=0),
        venue.closed_bars(symbol="ETHUSDT", interval="1m", since_ms=0),
        venue.funding_payments(symbol="BTCUSDT", since_ms=0),
    )


def session(venue: PaperVenue, clock: Clock, *, start: int, ticks: int) -> None:
    """A few executor ticks: a trade, a protective stop moved, time passing."""
    for n in range(start, start + ticks):
        venue.submit(market(f"m-{n}", Side.BUY if n % 3 else Side.SELL, "0.004"))
        if n % 2 == 0:
            venue.submit(stop(f"s-{n}", Side.SELL, "0.004", Decimal("40000.0")))
        clock.tick(97_000)


class TestPersistence:
    def test_the_book_survives_a_reload_and_prices_continue_identically(self) -> None:
        # given one account run without interruption ...
        clock_a = Clock()
        uninterrupted = paper(clock_a, name="a")
        session(uninterrupted, clock_a, start=0, ticks=40)
        # ... and the same account saved and loaded into a fresh object halfway
        clock_b = Clock()
        first = paper(clock_b, name="b")
        session(first, clock_b, start=0, ticks=20)
        first.save()
        reloaded = PaperVenue.load(name="b", config=first.config, clock_ms=clock_b)
        assert reloaded is not first
        assert reloaded.version == 1
        assert book(reloaded) == book(first)
        session(reloaded, clock_b, start=20, ticks=20)
        # then both saw the same prices, trades, bars and balances
        assert book(reloaded) == book(uninterrupted)

    def test_a_save_over_a_newer_version_is_refused(self) -> None:
        clock = Clock()
        venue = paper(clock, name="shared")
        venue.save()
        config = venue.config
        worker_1 = PaperVenue.load(name="shared", config=config, clock_ms=clock)
        worker_2 = PaperVenue.load(name="shared", config=config, clock_ms=clock)
        worker_1.submit(market("w1", Side.BUY, "0.002"))
        worker_1.save()
        worker_2.submit(market("w2", Side.BUY, "0.002"))
        with pytest.raises(PaperBookConflict):
            worker_2.save()
        stored = PaperAccount.objects.get(name="shared")
        assert stored.version == 2
        assert [o["client_order_id"] for o in stored.state["orders"]] == ["w1"]

    def test_two_fresh_accounts_with_one_name_do_not_both_save(self) -> None:
        paper(Clock(), name="twin").save()
        with pytest.raises(PaperBookConflict):
            paper(Clock(), name="twin").save()

    def test_loading_an_unknown_name_starts_a_fresh_account(self) -> None:
        config = paper_config_for(SYMBOLS, seed=7, starting_wallet=Decimal("500"))
        venue = PaperVenue.load(name="new", config=config, clock_ms=Clock())
        assert venue.version == 0
        assert venue.wallet_balance() == Decimal("500")


class TestDeterminism:
    def test_the_same_seed_and_calls_give_the_same_book(self) -> None:
        clock_1, clock_2 = Clock(), Clock()
        one, two = paper(clock_1, seed=11), paper(clock_2, seed=11)
        session(one, clock_1, start=0, ticks=15)
        session(two, clock_2, start=0, ticks=15)
        assert book(one) == book(two)
        other_clock = Clock()
        other = paper(other_clock, seed=12)
        session(other, other_clock, start=0, ticks=15)
        assert book(other)[0] != book(one)[0]

    def test_how_often_the_clock_is_read_does_not_change_the_prices(self) -> None:
        often, rarely = Clock(), Clock()
        polled, jumped = paper(often), paper(rarely)
        for _ in range(120):
            often.tick(13_000)
            polled.mark_prices()
        rarely.tick(120 * 13_000)
        assert book(polled) == book(jumped)


def test_the_paper_venue_satisfies_the_venue_protocol() -> None:
    venue: Venue = paper(Clock())
    assert set(venue.mark_prices()) == set(SYMBOLS)
    assert venue.wallet_balance() == Decimal("10000")


class TestReplay:
    @staticmethod
    def bars() -> list[VenueBar]:
        def bar(minute: int, o: str, h: str, low: str, c: str) -> VenueBar:
            start = T0 + minute * 60_000
            return VenueBar(
                start,
                start + 59_999,
                Decimal(o),
                Decimal(h),
                Decimal(low),
                Decimal(c),
                Decimal("12.5"),
            )

        return [
            bar(0, "100.0", "101.0", "99.0", "100.5"),
            bar(1, "100.8", "102.0", "100.1", "101.5"),
            bar(2, "101.4", "101.6", "97.0", "98.0"),
        ]

    def replay(self, clock: Clock) -> PaperVenue:
        spec = PaperSymbol(Decimal("100"), BTC_TICK, Decimal("0.001"))
        config = paper_config_for(
            ["BTCUSDT"], seed=0, overrides={"BTCUSDT": spec}, slippage_bps=Decimal("10")
        )
        return PaperVenue(
            name="replay", config=config, clock_ms=clock, replay_bars={"BTCUSDT": self.bars()}
        )

    def test_a_market_order_after_a_bar_closes_fills_at_the_next_open(self) -> None:
        # given the first bar has just closed
        clock = Clock(T0 + 60_000)
        venue = self.replay(clock)
        assert venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=0) == self.bars()[:1]
        assert venue.mark_prices() == {"BTCUSDT": Decimal("100.5")}
        # when a market buy is sent
        state = venue.submit(market("r", Side.BUY, "1.000"))
        # then it fills at the second bar's open plus 10 bps, rounded up to the tick
        assert state.average_price == Decimal("101.0")  # 100.8 x 1.001 = 100.9008, up to 101.0
        assert state.average_price == worse(Decimal("100.8"), Side.BUY, Decimal("10"))

    def test_a_stop_triggers_inside_a_bar_that_reaches_it(self) -> None:
        clock = Clock(T0 + 60_000)
        venue = self.replay(clock)
        venue.submit(market("r", Side.BUY, "1.000"))
        venue.submit(stop("s", Side.SELL, "1.000", Decimal("99.0")))
        clock.ms = T0 + 3 * 60_000
        [_, stop_trade] = venue.trades(symbol="BTCUSDT", since_ms=0)
        # the third bar falls to 97.0 (its path visits the high first, as it closes lower)
        assert stop_trade.price == worse(Decimal("97.0"), Side.SELL, Decimal("10"))
        assert venue.closed_bars(symbol="BTCUSDT", interval="1m", since_ms=0) == self.bars()
        assert venue.positions() == {}

    def test_orders_of_one_moment_all_fill_at_the_next_open(self) -> None:
        clock = Clock(T0 + 60_000)
        venue = self.replay(clock)
        first = venue.submit(market("a", Side.BUY, "1.000"))
        second = venue.submit(market("b", Side.BUY, "1.000"))
        assert first.average_price == second.average_price == Decimal("101.0")

    def test_an_order_before_a_gap_in_the_bars_expires_instead_of_filling_after_it(
        self,
    ) -> None:
        bars = self.bars()
        # the third bar half an hour later: no price within a bar of a decision before it
        late = replace(bars[2], open_time_ms=bars[2].open_time_ms + 30 * 60_000)
        late = replace(late, close_time_ms=late.open_time_ms + 59_999)
        clock = Clock(T0 + 2 * 60_000)
        spec = PaperSymbol(Decimal("100"), BTC_TICK, Decimal("0.001"))
        config = paper_config_for(["BTCUSDT"], seed=0, overrides={"BTCUSDT": spec})
        venue = PaperVenue(
            name="gap", config=config, clock_ms=clock, replay_bars={"BTCUSDT": [*bars[:2], late]}
        )
        state = venue.submit(market("g", Side.BUY, "1.000"))
        assert state.status == VenueStatus.EXPIRED
        assert venue.trades(symbol="BTCUSDT", since_ms=0) == []
        assert venue.mark_prices() == {"BTCUSDT": Decimal("101.5")}  # not the late bar's


def test_an_unchanged_position_state_round_trips_through_json() -> None:
    venue = paper(Clock(), name="json")
    venue.submit(market("open", Side.BUY, "0.003"))
    venue.save()
    loaded = PaperVenue.load(name="json", config=venue.config, clock_ms=Clock())
    assert isinstance(loaded.position_states()["BTCUSDT"], PositionState)
    assert loaded.position_states() == venue.position_states()
