"""Exchange filters (routing/filters.py): parsing exchangeInfo, rounding with Decimal, local
rejections, and a property test against a plain reference re-derived from the definitions."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.limits import Side
from routing.filters import (
    FilterRejection,
    RejectionReason,
    RoundedOrder,
    SymbolFilters,
    filters_from_exchange_info,
    order_rounded,
)

D = Decimal

# Shaped like one entry of GET /fapi/v1/exchangeInfo "symbols" (values as Binance sends them).
BTCUSDT_INFO: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "556.80",
            "maxPrice": "4529764",
            "tickSize": "0.10",
        },
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.010", "maxQty": "120", "minQty": "0.010"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500"},
    ],
}


@pytest.fixture
def btc() -> SymbolFilters:
    return filters_from_exchange_info(BTCUSDT_INFO)


def info_with(filter_type: str, **fields: Any) -> dict[str, Any]:
    info = copy.deepcopy(BTCUSDT_INFO)
    for raw in info["filters"]:
        if raw["filterType"] == filter_type:
            raw.update(fields)
    return info


def info_without(filter_type: str) -> dict[str, Any]:
    info = copy.deepcopy(BTCUSDT_INFO)
    info["filters"] = [raw for raw in info["filters"] if raw["filterType"] != filter_type]
    return info


class TestParsing:
    def test_it_reads_every_filter_as_exact_decimals(self, btc: SymbolFilters) -> None:
        assert btc == SymbolFilters(
            symbol="BTCUSDT",
            tick_size=D("0.10"),
            step_size=D("0.001"),
            min_qty=D("0.001"),
            max_qty=D("1000"),
            market_step_size=D("0.010"),
            market_min_qty=D("0.010"),
            market_max_qty=D("120"),
            min_notional=D("100"),
        )

    def test_market_lot_size_falls_back_to_lot_size_when_absent(self) -> None:
        filters = filters_from_exchange_info(info_without("MARKET_LOT_SIZE"))
        assert (filters.market_step_size, filters.market_min_qty, filters.market_max_qty) == (
            D("0.001"),
            D("0.001"),
            D("1000"),
        )

    @pytest.mark.parametrize("filter_type", ["PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL"])
    def test_it_names_the_symbol_and_a_missing_filter(self, filter_type: str) -> None:
        with pytest.raises(ValueError, match=f"BTCUSDT: exchangeInfo has no {filter_type}"):
            filters_from_exchange_info(info_without(filter_type))

    @pytest.mark.parametrize(
        ("filter_type", "field", "value", "complaint"),
        [
            ("PRICE_FILTER", "tickSize", "abc", "is not a number"),
            ("PRICE_FILTER", "tickSize", "0", "must be positive"),
            ("LOT_SIZE", "stepSize", "-0.001", "must be positive"),
            ("LOT_SIZE", "minQty", "NaN", "must be non-negative"),
            ("LOT_SIZE", "maxQty", 1000.0, "must be a decimal string"),
            ("MARKET_LOT_SIZE", "stepSize", None, "must be a decimal string"),
            ("MIN_NOTIONAL", "notional", "Infinity", "must be non-negative"),
        ],
    )
    def test_it_names_the_symbol_filter_and_field_of_a_bad_value(
        self, filter_type: str, field: str, value: Any, complaint: str
    ) -> None:
        with pytest.raises(ValueError, match=f"BTCUSDT: {filter_type}.{field} {complaint}"):
            filters_from_exchange_info(info_with(filter_type, **{field: value}))

    def test_it_names_a_missing_field(self) -> None:
        info = copy.deepcopy(BTCUSDT_INFO)
        del info["filters"][1]["stepSize"]
        with pytest.raises(ValueError, match="BTCUSDT: LOT_SIZE has no 'stepSize'"):
            filters_from_exchange_info(info)

    def test_it_refuses_min_qty_above_max_qty(self) -> None:
        with pytest.raises(ValueError, match="BTCUSDT: LOT_SIZE minQty 5 > maxQty 1"):
            filters_from_exchange_info(info_with("LOT_SIZE", minQty="5", maxQty="1"))

    @pytest.mark.parametrize(
        "info",
        [
            {},
            {"symbol": "", "filters": []},
            {"symbol": "ETHUSDT"},
            {"symbol": "ETHUSDT", "filters": [7]},
        ],
    )
    def test_it_refuses_a_malformed_entry(self, info: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"exchangeInfo|ETHUSDT"):
            filters_from_exchange_info(info)


class TestRounding:
    def test_limit_quantity_rounds_down_to_the_lot_step(self, btc: SymbolFilters) -> None:
        order = order_rounded(
            filters=btc, quantity=D("0.12345"), price=D("50000"), order_type="LIMIT", side="BUY"
        )
        assert order == RoundedOrder(quantity=D("0.123"), price=D("50000"), notional=D("6150"))

    def test_market_quantity_rounds_down_to_the_market_lot_step(self, btc: SymbolFilters) -> None:
        order = order_rounded(
            filters=btc, quantity=D("0.12345"), price=D("50000"), order_type="MARKET", side="SELL"
        )
        assert order == RoundedOrder(quantity=D("0.12"), price=None, notional=D("6000"))

    def test_buy_limit_price_rounds_down_to_the_tick(self, btc: SymbolFilters) -> None:
        order = order_rounded(
            filters=btc, quantity=D("1"), price=D("50000.19"), order_type="LIMIT", side="BUY"
        )
        assert isinstance(order, RoundedOrder)
        assert order.price == D("50000.10")

    def test_sell_limit_price_rounds_up_to_the_tick(self, btc: SymbolFilters) -> None:
        order = order_rounded(
            filters=btc, quantity=D("1"), price=D("50000.11"), order_type="LIMIT", side=Side.SELL
        )
        assert isinstance(order, RoundedOrder)
        assert order.price == D("50000.20")

    def test_a_price_on_the_tick_is_kept_for_either_side(self, btc: SymbolFilters) -> None:
        for side in ("BUY", "SELL"):
            order = order_rounded(
                filters=btc, quantity=D("1"), price=D("50000.3"), order_type="LIMIT", side=side
            )
            assert isinstance(order, RoundedOrder)
            assert order.price == D("50000.3")

    def test_steps_that_are_not_powers_of_ten_are_honoured(self, btc: SymbolFilters) -> None:
        filters = replace(btc, tick_size=D("0.5"), step_size=D("5"))
        order = order_rounded(
            filters=filters, quantity=D("14.9"), price=D("20.74"), order_type="LIMIT", side="SELL"
        )
        assert order == RoundedOrder(quantity=D("10"), price=D("21.0"), notional=D("210"))

    def test_values_are_written_with_no_more_decimals_than_the_step(
        self, btc: SymbolFilters
    ) -> None:
        # Binance answers -1111 to "0.0100" when the step is 0.010, zeros or not.
        order = order_rounded(
            filters=btc,
            quantity=D("0.01999"),
            price=D("50000.1234"),
            order_type="LIMIT",
            side="BUY",
        )
        assert isinstance(order, RoundedOrder)
        assert (str(order.quantity), str(order.price)) == ("0.019", "50000.1")
        market = order_rounded(
            filters=btc, quantity=D("0.0199"), price=D("50000"), order_type="MARKET", side="BUY"
        )
        assert isinstance(market, RoundedOrder)
        assert str(market.quantity) == "0.01"

    def test_steps_of_ten_stay_in_plain_notation(self, btc: SymbolFilters) -> None:
        filters = replace(btc, step_size=D("10"), max_qty=D("100000"))
        order = order_rounded(
            filters=filters, quantity=D("1234.5"), price=D("1"), order_type="LIMIT", side="BUY"
        )
        assert isinstance(order, RoundedOrder)
        assert str(order.quantity) == "1230"


class TestRejections:
    def test_it_rejects_a_quantity_that_rounds_below_the_minimum(self, btc: SymbolFilters) -> None:
        # 0.0199 is above LOT_SIZE's 0.001 minimum but rounds to 0.01 on the market step,
        # below a market minimum raised to 0.02.
        filters = replace(btc, market_min_qty=D("0.02"))
        rejection = order_rounded(
            filters=filters, quantity=D("0.0199"), price=D("50000"), order_type="MARKET", side="BUY"
        )
        assert rejection == FilterRejection(
            RejectionReason.QUANTITY_BELOW_MIN,
            "BTCUSDT BUY MARKET: quantity 0.0199 rounds down to 0.01 (step 0.010), "
            "below the minimum 0.02",
        )

    def test_it_rejects_a_quantity_that_rounds_to_zero(self, btc: SymbolFilters) -> None:
        rejection = order_rounded(
            filters=btc, quantity=D("0.0009"), price=D("50000"), order_type="LIMIT", side="BUY"
        )
        assert isinstance(rejection, FilterRejection)
        assert rejection.reason is RejectionReason.QUANTITY_BELOW_MIN

    def test_it_rejects_above_the_market_maximum_but_not_the_limit_maximum(
        self, btc: SymbolFilters
    ) -> None:
        market = order_rounded(
            filters=btc, quantity=D("121"), price=D("50000"), order_type="MARKET", side="BUY"
        )
        limit = order_rounded(
            filters=btc, quantity=D("121"), price=D("50000"), order_type="LIMIT", side="BUY"
        )
        assert isinstance(market, FilterRejection)
        assert market.reason is RejectionReason.QUANTITY_ABOVE_MAX
        assert "above the maximum 120" in market.message
        assert isinstance(limit, RoundedOrder)

    def test_it_rejects_a_notional_below_the_minimum_after_rounding(
        self, btc: SymbolFilters
    ) -> None:
        # 0.0029 * 50000 = 145 before rounding, 0.002 * 50000 = 100 after: still allowed;
        # 49999.95 rounds down to 49999.9 for a BUY, and 0.002 * 49999.9 = 99.9998 < 100.
        allowed = order_rounded(
            filters=btc, quantity=D("0.0029"), price=D("50000"), order_type="LIMIT", side="BUY"
        )
        rejected = order_rounded(
            filters=btc, quantity=D("0.0029"), price=D("49999.95"), order_type="LIMIT", side="BUY"
        )
        assert allowed == RoundedOrder(quantity=D("0.002"), price=D("50000"), notional=D("100.000"))
        assert isinstance(rejected, FilterRejection)
        assert rejected.reason is RejectionReason.NOTIONAL_BELOW_MIN
        assert rejected.message == (
            "BTCUSDT BUY LIMIT: notional 99.9998 (0.002 * 49999.9) is below the minimum 100"
        )

    def test_it_rejects_a_buy_price_that_rounds_to_zero(self, btc: SymbolFilters) -> None:
        no_minimum = replace(btc, min_notional=D("0"))
        rejection = order_rounded(
            filters=no_minimum, quantity=D("1"), price=D("0.05"), order_type="LIMIT", side="BUY"
        )
        assert isinstance(rejection, FilterRejection)
        assert rejection.reason is RejectionReason.PRICE_BELOW_TICK

    @pytest.mark.parametrize(
        ("quantity", "price", "order_type", "side", "complaint"),
        [
            (D("0"), D("1"), "LIMIT", "BUY", "quantity must be a positive Decimal"),
            (D("1"), D("-1"), "LIMIT", "BUY", "price must be a positive Decimal"),
            (D("NaN"), D("1"), "LIMIT", "BUY", "quantity must be a positive Decimal"),
            (D("1"), D("1"), "STOP", "BUY", "unsupported order type 'STOP'"),
            (D("1"), D("1"), "LIMIT", "LONG", "unsupported side 'LONG'"),
        ],
    )
    def test_it_refuses_nonsense_input_loudly(
        self,
        btc: SymbolFilters,
        quantity: Decimal,
        price: Decimal,
        order_type: str,
        side: str,
        complaint: str,
    ) -> None:
        with pytest.raises(ValueError, match=complaint):
            order_rounded(
                filters=btc, quantity=quantity, price=price, order_type=order_type, side=side
            )


# --- property test -------------------------------------------------------------------------


def decimals_with(places: int, low: str, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(low), max_value=D(high), places=places)


steps = st.sampled_from([D("0.001"), D("0.01"), D("0.1"), D("1"), D("0.5"), D("5"), D("0.025")])


@st.composite
def symbol_filters(draw: st.DrawFn) -> SymbolFilters:
    step, market_step, tick = draw(steps), draw(steps), draw(steps)
    min_qty = step * draw(st.integers(0, 20))
    market_min_qty = market_step * draw(st.integers(0, 20))
    return SymbolFilters(
        symbol="TESTUSDT",
        tick_size=tick,
        step_size=step,
        min_qty=min_qty,
        max_qty=min_qty + step * draw(st.integers(0, 5000)),
        market_step_size=market_step,
        market_min_qty=market_min_qty,
        market_max_qty=market_min_qty + market_step * draw(st.integers(0, 5000)),
        min_notional=draw(decimals_with(2, "0", "200")),
    )


def reference_floor(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of step not above value, by counting steps with integers."""
    count = int(value / step)  # truncates; value and step are positive
    while (count + 1) * step <= value:
        count += 1
    while count * step > value:
        count -= 1
    return count * step


def places(step: Decimal) -> int:
    return -int(step.normalize().as_tuple().exponent)


def reference_ceil(value: Decimal, step: Decimal) -> Decimal:
    floor = reference_floor(value, step)
    return floor if floor == value else floor + step


@st.composite
def quantities_near_the_range(draw: st.DrawFn, filters: SymbolFilters) -> Decimal:
    """Whole steps across and beyond [0, max] plus an off-step fraction, never zero."""
    step = max(filters.step_size, filters.market_step_size)
    top = max(filters.max_qty, filters.market_max_qty)
    steps_count = draw(st.integers(0, int(top / step) + 20))
    fraction = draw(st.decimals(min_value=0, max_value=step - D("0.000001"), places=6))
    return max(steps_count * step + fraction, D("0.000001"))


@st.composite
def orders(draw: st.DrawFn) -> tuple[SymbolFilters, Decimal, Decimal, str, str]:
    filters = draw(symbol_filters())
    quantity = draw(quantities_near_the_range(filters))
    price = draw(st.one_of(decimals_with(4, "0.0001", "10"), decimals_with(4, "10", "100000")))
    return (
        filters,
        quantity,
        price,
        draw(st.sampled_from(["MARKET", "LIMIT"])),
        draw(st.sampled_from(["BUY", "SELL"])),
    )


@settings(max_examples=300)
@given(order=orders())
def test_rounding_and_rejection_match_the_plain_reference(
    order: tuple[SymbolFilters, Decimal, Decimal, str, str],
) -> None:
    filters, quantity, price, order_type, side = order
    # given the definitions, re-derived without the module's helpers
    market = order_type == "MARKET"
    step = filters.market_step_size if market else filters.step_size
    min_qty = filters.market_min_qty if market else filters.min_qty
    max_qty = filters.market_max_qty if market else filters.max_qty
    expected_quantity = reference_floor(quantity, step)
    if market:
        expected_price = None
        notional = expected_quantity * price
    else:
        round_price = reference_floor if side == "BUY" else reference_ceil
        expected_price = round_price(price, filters.tick_size)
        notional = expected_quantity * expected_price
    breaks_a_filter = (
        (expected_price is not None and expected_price <= 0)
        or expected_quantity <= 0
        or expected_quantity < min_qty
        or expected_quantity > max_qty
        or notional < filters.min_notional
    )

    # when
    result = order_rounded(
        filters=filters, quantity=quantity, price=price, order_type=order_type, side=side
    )

    # then
    assert isinstance(result, FilterRejection) == breaks_a_filter
    if isinstance(result, RoundedOrder):
        assert result.quantity == expected_quantity
        assert result.quantity <= quantity
        assert result.quantity % step == 0
        assert -int(result.quantity.as_tuple().exponent) <= max(places(step), 0)
        assert result.price == expected_price
        if result.price is not None:
            assert result.price % filters.tick_size == 0
            assert -int(result.price.as_tuple().exponent) <= max(places(filters.tick_size), 0)
            assert abs(result.price - price) < filters.tick_size
            assert result.price <= price if side == "BUY" else result.price >= price
        assert result.notional == notional
