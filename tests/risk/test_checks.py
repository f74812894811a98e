"""Pre-trade checks (risk/checks.py): every limit at its boundary, every refusal's numbers, and a
property test against a plain reference implementation re-derived from the definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.checks import (
    DEFAULT_MAINTENANCE_MARGIN_RATE,
    Decision,
    Refusal,
    RefusalCode,
    pretrade_check,
)
from risk.limits import AccountView, Limits, OrderIntent, Side
from tradingsite.decimals import STEP

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
D = Decimal
T = TypeVar("T")

# --- factories: generous defaults, so each test only states the numbers it is about ---------


def make_limits(**changes: Any) -> Limits:
    limits = Limits(
        max_order_notional=D("1000000.00"),
        max_position_notional=D("1000000.00"),
        max_gross_exposure=D("10000000.00"),
        max_leverage=D("100"),
        max_daily_loss=D("0.05"),
        max_drawdown=D("0.20"),
        max_open_orders=50,
        loss_streak_limit=3,
        loss_streak_cooldown=timedelta(hours=1),
        min_liquidation_distance=D("0"),
        autotune_floor=D("0.25"),
        kill_switch=False,
    )
    return replace(limits, **changes)


def make_account(**changes: Any) -> AccountView:
    account = AccountView(
        nav=D("100000.00"),
        drawdown=D("0"),
        daily_loss=D("0"),
        loss_streak=0,
        cooldown_until=None,
        halted=False,
        halt_reason="",
        open_orders=0,
    )
    return replace(account, **changes)


def make_intent(
    quantity: str | Decimal = "1",
    price: str | Decimal = "50000",
    *,
    side: Side = Side.BUY,
    symbol: str = "BTCUSDT",
    reduce_only: bool = False,
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        price=D(price),
        reduce_only=reduce_only,
    )


def check(
    intent: OrderIntent | None = None,
    *,
    account: AccountView | None = None,
    limits: Limits | None = None,
    positions: Mapping[str, Decimal] | None = None,
    marks: Mapping[str, Decimal] | None = None,
    now: datetime = NOW,
    maintenance_margin_rate: Decimal = DEFAULT_MAINTENANCE_MARGIN_RATE,
) -> Decision:
    return pretrade_check(
        intent=intent or make_intent(),
        account=account or make_account(),
        limits=limits or make_limits(),
        positions=positions or {},
        marks=marks or {},
        now=now,
        maintenance_margin_rate=maintenance_margin_rate,
    )


def only_refusal(decision: Decision) -> Refusal:
    assert not decision.ok
    assert len(decision.refusals) == 1, decision.message
    return decision.refusals[0]


def test_it_accepts_an_order_inside_every_limit() -> None:
    decision = check()

    assert decision.ok
    assert decision.refusals == ()
    assert decision.codes == frozenset()
    assert decision.message == ""


# --- max_order_notional ---------------------------------------------------------------------


class TestMaxOrderNotional:
    def test_it_allows_an_order_whose_notional_is_exactly_max_order_notional(self) -> None:
        limits = make_limits(max_order_notional=D("10000.00"))

        assert check(make_intent("2", "5000"), limits=limits).ok

    def test_it_refuses_an_order_one_step_over_max_order_notional(self) -> None:
        limits = make_limits(max_order_notional=D("10000.00"))

        refusal = only_refusal(check(make_intent("1", D("10000.00") + STEP), limits=limits))

        assert refusal.code == RefusalCode.MAX_ORDER_NOTIONAL
        assert refusal.limit == D("10000.00")
        assert refusal.value == D("10000.00000001")
        assert refusal.message == (
            "order notional 10000.00000001 USDT exceeds max_order_notional 10000.00 USDT"
        )

    def test_its_message_names_the_limit_and_both_numbers(self) -> None:
        limits = make_limits(max_order_notional=D("10000"))

        refusal = only_refusal(check(make_intent("0.21", "50000"), limits=limits))

        assert refusal.message == (
            "order notional 10500.00 USDT exceeds max_order_notional 10000.00 USDT"
        )
        assert refusal.value == D("10500")

    def test_it_measures_the_order_at_the_intent_price_not_the_mark(self) -> None:
        limits = make_limits(max_order_notional=D("10000"))

        decision = check(make_intent("1", "10000"), limits=limits, marks={"BTCUSDT": D("99999")})

        assert decision.ok


# --- max_position_notional ------------------------------------------------------------------


class TestMaxPositionNotional:
    # 0.4 held, 0.6 more in the same direction: |position after| is exactly 1.
    @pytest.mark.parametrize(("held", "side"), [("0.4", Side.BUY), ("-0.4", Side.SELL)])
    def test_it_allows_a_position_notional_after_of_exactly_max_position_notional(
        self, held: str, side: Side
    ) -> None:
        decision = check(
            make_intent("0.6", "100", side=side),
            limits=make_limits(max_position_notional=D("75000.00")),
            positions={"BTCUSDT": D(held)},
            marks={"BTCUSDT": D("75000.00")},
        )

        assert decision.ok

    @pytest.mark.parametrize(("held", "side"), [("0.4", Side.BUY), ("-0.4", Side.SELL)])
    def test_it_refuses_a_position_notional_after_one_step_over_max_position_notional(
        self, held: str, side: Side
    ) -> None:
        decision = check(
            make_intent("0.6", "100", side=side),
            limits=make_limits(max_position_notional=D("75000.00")),
            positions={"BTCUSDT": D(held)},
            marks={"BTCUSDT": D("75000.00") + STEP},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_POSITION_NOTIONAL
        assert refusal.limit == D("75000.00")
        assert refusal.value == D("75000.00000001")
        assert refusal.message == (
            "BTCUSDT position notional after the order 75000.00000001 USDT "
            "exceeds max_position_notional 75000.00 USDT"
        )

    def test_it_values_the_position_at_the_intent_price_when_the_symbol_has_no_mark(
        self,
    ) -> None:
        limits = make_limits(max_position_notional=D("75000"))

        at_limit = check(make_intent("1", "75000"), limits=limits)
        over = check(make_intent("1", D("75000") + STEP), limits=limits)

        assert at_limit.ok
        assert only_refusal(over).code == RefusalCode.MAX_POSITION_NOTIONAL
        assert only_refusal(over).value == D("75000.00000001")

    def test_it_holds_an_ordinary_order_that_shrinks_an_oversized_position_to_the_limit(
        self,
    ) -> None:
        decision = check(
            make_intent("1", "100", side=Side.SELL),
            limits=make_limits(max_position_notional=D("1000")),
            positions={"BTCUSDT": D("12")},
            marks={"BTCUSDT": D("100")},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_POSITION_NOTIONAL
        assert refusal.value == D("1100")


# --- max_gross_exposure ---------------------------------------------------------------------


class TestMaxGrossExposure:
    # |-10 ETH| x 3000 + |0.5 + 0.5 BTC| x 45000 = 30000 + 45000 = 75000.
    positions = {"ETHUSDT": D("-10"), "BTCUSDT": D("0.5")}

    def test_it_allows_a_gross_exposure_after_of_exactly_max_gross_exposure(self) -> None:
        decision = check(
            make_intent("0.5", "45000"),
            limits=make_limits(max_gross_exposure=D("75000.00")),
            positions=self.positions,
            marks={"ETHUSDT": D("3000"), "BTCUSDT": D("45000")},
        )

        assert decision.ok

    def test_it_refuses_a_gross_exposure_after_one_step_over_max_gross_exposure(self) -> None:
        decision = check(
            make_intent("0.5", "45000"),
            limits=make_limits(max_gross_exposure=D("75000.00")),
            positions=self.positions,
            marks={"ETHUSDT": D("3000"), "BTCUSDT": D("45000") + STEP},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_GROSS_EXPOSURE
        assert refusal.limit == D("75000.00")
        assert refusal.value == D("75000.00000001")
        assert refusal.message == (
            "gross exposure after the order 75000.00000001 USDT "
            "exceeds max_gross_exposure 75000.00 USDT"
        )

    def test_it_ignores_flat_symbols_even_without_a_mark(self) -> None:
        decision = check(
            make_intent("1", "45000"),
            limits=make_limits(max_gross_exposure=D("45000")),
            positions={"ETHUSDT": D("0"), "SOLUSDT": D("0.000")},
        )

        assert decision.ok


# --- max_leverage ---------------------------------------------------------------------------


class TestMaxLeverage:
    def test_it_allows_a_leverage_after_of_exactly_max_leverage(self) -> None:
        decision = check(
            make_intent("1", "30000"),
            account=make_account(nav=D("10000")),
            limits=make_limits(max_leverage=D("3")),
        )

        assert decision.ok

    def test_it_refuses_a_leverage_after_one_step_over_max_leverage(self) -> None:
        # gross / NAV = 3 + STEP  <=>  gross = 30000 + 10000 x STEP = 30000.0001
        decision = check(
            make_intent("1", "30000.0001"),
            account=make_account(nav=D("10000")),
            limits=make_limits(max_leverage=D("3")),
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_LEVERAGE
        assert refusal.limit == D("3")
        assert refusal.value == D("3") + STEP
        assert refusal.message == "leverage after the order 3.00000001x exceeds max_leverage 3.00x"

    def test_it_counts_every_symbols_exposure_in_leverage(self) -> None:
        decision = check(
            make_intent("1", "10000"),
            account=make_account(nav=D("10000")),
            limits=make_limits(max_leverage=D("3")),
            positions={"ETHUSDT": D("-5"), "SOLUSDT": D("100")},
            marks={"ETHUSDT": D("2000"), "SOLUSDT": D("100.0001")},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_LEVERAGE
        # (10000 + |-5| x 2000 + 100 x 100.0001) / 10000
        assert refusal.value == D("3.000001")


# --- min_liquidation_distance ---------------------------------------------------------------


class TestMinLiquidationDistance:
    # distance = (NAV - 0.004 x gross) / gross; gross = 50000.
    def test_it_allows_a_liquidation_distance_of_exactly_the_minimum(self) -> None:
        # (10200 - 200) / 50000 = 0.2
        decision = check(
            make_intent("1", "50000"),
            account=make_account(nav=D("10200")),
            limits=make_limits(min_liquidation_distance=D("0.2")),
        )

        assert decision.ok

    def test_it_refuses_a_liquidation_distance_one_step_below_the_minimum(self) -> None:
        # (10199.9995 - 200) / 50000 = 0.19999999
        decision = check(
            make_intent("1", "50000"),
            account=make_account(nav=D("10199.9995")),
            limits=make_limits(min_liquidation_distance=D("0.2")),
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MIN_LIQUIDATION_DISTANCE
        assert refusal.limit == D("0.2")
        assert refusal.value == D("0.2") - STEP
        assert refusal.message == (
            "liquidation distance after the order 0.19999999 is below min_liquidation_distance 0.20"
        )

    def test_it_uses_the_maintenance_margin_rate_it_is_given(self) -> None:
        # (10500 - 0.01 x 50000) / 50000 = 0.2; one step more margin rate is one step less room.
        kwargs: dict[str, Any] = {
            "intent": make_intent("1", "50000"),
            "account": make_account(nav=D("10500")),
            "limits": make_limits(min_liquidation_distance=D("0.2")),
        }

        at_minimum = check(**kwargs, maintenance_margin_rate=D("0.01"))
        below = check(**kwargs, maintenance_margin_rate=D("0.01") + STEP)

        assert at_minimum.ok
        assert only_refusal(below).value == D("0.2") - STEP

    def test_it_never_refuses_when_nothing_is_open_after_the_order(self) -> None:
        decision = check(
            make_intent("1", "50000", side=Side.SELL),
            account=make_account(nav=D("1")),
            limits=make_limits(min_liquidation_distance=D("0.99"), max_leverage=D("0")),
            positions={"BTCUSDT": D("1")},
            marks={"BTCUSDT": D("50000")},
        )

        assert decision.ok

    @pytest.mark.parametrize("rate", ["-0.001", "1", "NaN", "Infinity"])
    def test_it_raises_for_a_maintenance_margin_rate_outside_zero_to_one(self, rate: str) -> None:
        with pytest.raises(ValueError, match="maintenance_margin_rate"):
            check(maintenance_margin_rate=D(rate))


# --- daily loss, drawdown -------------------------------------------------------------------


class TestDailyLossAndDrawdown:
    def test_it_allows_a_daily_loss_of_exactly_max_daily_loss(self) -> None:
        limits = make_limits(max_daily_loss=D("0.05"))

        assert check(account=make_account(daily_loss=D("0.05")), limits=limits).ok

    def test_it_refuses_a_daily_loss_one_step_over_max_daily_loss(self) -> None:
        limits = make_limits(max_daily_loss=D("0.05"))

        decision = check(account=make_account(daily_loss=D("0.05") + STEP), limits=limits)

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_DAILY_LOSS
        assert refusal.limit == D("0.05")
        assert refusal.value == D("0.05000001")
        assert refusal.message == "daily loss 0.05000001 exceeds max_daily_loss 0.05"

    def test_it_allows_a_drawdown_of_exactly_max_drawdown(self) -> None:
        limits = make_limits(max_drawdown=D("0.20"))

        assert check(account=make_account(drawdown=D("0.20")), limits=limits).ok

    def test_it_refuses_a_drawdown_one_step_over_max_drawdown(self) -> None:
        limits = make_limits(max_drawdown=D("0.20"))

        decision = check(account=make_account(drawdown=D("0.20") + STEP), limits=limits)

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_DRAWDOWN
        assert refusal.limit == D("0.20")
        assert refusal.value == D("0.20000001")
        assert refusal.message == "drawdown 0.20000001 exceeds max_drawdown 0.20"


# --- max_open_orders ------------------------------------------------------------------------


class TestMaxOpenOrders:
    def test_it_allows_the_order_that_brings_open_orders_to_exactly_the_maximum(self) -> None:
        decision = check(account=make_account(open_orders=4), limits=make_limits(max_open_orders=5))

        assert decision.ok

    def test_it_refuses_the_order_that_would_be_one_over_max_open_orders(self) -> None:
        decision = check(account=make_account(open_orders=5), limits=make_limits(max_open_orders=5))

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MAX_OPEN_ORDERS
        assert refusal.limit == 5
        assert refusal.value == 6
        assert refusal.message == "open orders with this one 6 exceeds max_open_orders 5"


# --- loss-streak cooldown -------------------------------------------------------------------


class TestLossStreakCooldown:
    def test_it_allows_orders_from_the_instant_the_cooldown_ends(self) -> None:
        decision = check(account=make_account(loss_streak=4, cooldown_until=NOW), now=NOW)

        assert decision.ok

    def test_it_refuses_orders_one_microsecond_before_the_cooldown_ends(self) -> None:
        until = NOW + timedelta(microseconds=1)

        decision = check(
            account=make_account(loss_streak=4, cooldown_until=until),
            limits=make_limits(loss_streak_limit=3),
            now=NOW,
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.LOSS_STREAK_COOLDOWN
        assert refusal.limit == 3
        assert refusal.value == 4
        assert until.isoformat() in refusal.message
        assert "loss streak 4" in refusal.message
        assert "loss_streak_limit 3" in refusal.message


# --- kill switch, halt, NAV -----------------------------------------------------------------


class TestKillSwitchHaltAndNav:
    def test_it_refuses_every_ordinary_order_while_the_kill_switch_is_on(self) -> None:
        refusal = only_refusal(check(limits=make_limits(kill_switch=True)))

        assert refusal.code == RefusalCode.KILL_SWITCH
        assert (refusal.limit, refusal.value) == (None, None)
        assert "kill switch is on" in refusal.message

    def test_it_refuses_ordinary_orders_while_halted_and_names_the_reason(self) -> None:
        reason = "drawdown 0.21 exceeds max_drawdown 0.20"

        refusal = only_refusal(check(account=make_account(halted=True, halt_reason=reason)))

        assert refusal.code == RefusalCode.HALTED
        assert (refusal.limit, refusal.value) == (None, None)
        assert reason in refusal.message

    def test_it_says_so_when_a_halt_has_no_recorded_reason(self) -> None:
        refusal = only_refusal(check(account=make_account(halted=True, halt_reason="")))

        assert "no reason recorded" in refusal.message

    @pytest.mark.parametrize(("nav", "shown"), [("0", "0.00"), ("-5", "-5.00")])
    def test_it_refuses_ordinary_orders_when_nav_is_not_positive(
        self, nav: str, shown: str
    ) -> None:
        decision = check(
            account=make_account(nav=D(nav)),
            limits=make_limits(max_leverage=D("0"), min_liquidation_distance=D("0.5")),
        )

        # Leverage and liquidation distance are ratios to NAV: not evaluated without NAV.
        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.NON_POSITIVE_NAV
        assert refusal.limit is None
        assert refusal.value == D(nav)
        assert f"NAV {shown} USDT" in refusal.message

    def test_it_accepts_a_tiny_order_with_the_smallest_positive_nav(self) -> None:
        decision = check(make_intent(STEP, STEP), account=make_account(nav=STEP))

        assert decision.ok


# --- several at once ------------------------------------------------------------------------


def test_it_reports_every_refusal_that_applies_in_a_fixed_order() -> None:
    decision = check(
        make_intent("2", "50000"),
        account=make_account(
            nav=D("10000"),
            daily_loss=D("0.06"),
            drawdown=D("0.25"),
            loss_streak=3,
            cooldown_until=NOW + timedelta(minutes=5),
            halted=True,
            halt_reason="operator",
            open_orders=2,
        ),
        limits=make_limits(
            kill_switch=True,
            max_open_orders=2,
            max_order_notional=D("50000"),
            max_position_notional=D("50000"),
            max_gross_exposure=D("100000"),
            max_leverage=D("5"),
            min_liquidation_distance=D("0.5"),
        ),
        positions={"ETHUSDT": D("1")},
        marks={"ETHUSDT": D("3000")},
    )

    assert [refusal.code for refusal in decision.refusals] == [
        RefusalCode.KILL_SWITCH,
        RefusalCode.HALTED,
        RefusalCode.MAX_DAILY_LOSS,
        RefusalCode.MAX_DRAWDOWN,
        RefusalCode.LOSS_STREAK_COOLDOWN,
        RefusalCode.MAX_OPEN_ORDERS,
        RefusalCode.MAX_ORDER_NOTIONAL,
        RefusalCode.MAX_POSITION_NOTIONAL,
        RefusalCode.MAX_GROSS_EXPOSURE,
        RefusalCode.MAX_LEVERAGE,
        RefusalCode.MIN_LIQUIDATION_DISTANCE,
    ]
    by_code = {refusal.code: refusal for refusal in decision.refusals}
    assert by_code[RefusalCode.MAX_GROSS_EXPOSURE].value == D("103000")
    assert by_code[RefusalCode.MAX_LEVERAGE].value == D("10.3")
    assert "10.30x" in by_code[RefusalCode.MAX_LEVERAGE].message
    assert by_code[RefusalCode.MIN_LIQUIDATION_DISTANCE].value == (
        D("10000") - D("0.004") * D("103000")
    ) / D("103000")
    assert all(refusal.message in decision.message for refusal in decision.refusals)


def test_it_reports_missing_marks_and_non_positive_nav_beside_the_other_refusals() -> None:
    decision = check(
        make_intent("2", "50000"),
        account=make_account(nav=D("0")),
        limits=make_limits(kill_switch=True, max_order_notional=D("1"), max_gross_exposure=D("1")),
        positions={"ETHUSDT": D("1")},
    )

    assert [refusal.code for refusal in decision.refusals] == [
        RefusalCode.KILL_SWITCH,
        RefusalCode.MAX_ORDER_NOTIONAL,
        RefusalCode.MISSING_MARK,
        RefusalCode.NON_POSITIVE_NAV,
    ]


# --- reduce-only ----------------------------------------------------------------------------


class TestReduceOnly:
    everything_breached: dict[str, Any] = {
        "account": make_account(
            nav=D("-100"),
            daily_loss=D("0.5"),
            drawdown=D("0.9"),
            loss_streak=9,
            cooldown_until=NOW + timedelta(hours=1),
            halted=True,
            halt_reason="max_drawdown breached",
            open_orders=99,
        ),
        "limits": make_limits(
            kill_switch=True,
            max_open_orders=1,
            max_order_notional=D("1"),
            max_position_notional=D("1"),
            max_gross_exposure=D("1"),
            max_leverage=D("0.01"),
            min_liquidation_distance=D("0.9"),
        ),
    }

    @pytest.mark.parametrize(
        ("held", "side", "quantity"),
        [
            ("1", Side.SELL, "0.5"),
            ("1", Side.SELL, "1"),
            ("-1", Side.BUY, "0.5"),
            ("-1", Side.BUY, "1"),
        ],
    )
    def test_it_allows_a_reduce_only_order_while_every_other_check_would_refuse(
        self, held: str, side: Side, quantity: str
    ) -> None:
        decision = check(
            make_intent(quantity, "50000", side=side, reduce_only=True),
            positions={"BTCUSDT": D(held), "ETHUSDT": D("3")},  # ETH has no mark either
            **self.everything_breached,
        )

        assert decision.ok

    @pytest.mark.parametrize(
        ("held", "side", "quantity", "after"),
        [
            ("1", Side.BUY, "0.5", "1.5"),
            ("-1", Side.SELL, "0.5", "-1.5"),
        ],
    )
    def test_it_refuses_a_reduce_only_order_that_would_increase_the_position(
        self, held: str, side: Side, quantity: str, after: str
    ) -> None:
        decision = check(
            make_intent(quantity, "50000", side=side, reduce_only=True),
            positions={"BTCUSDT": D(held)},
            **self.everything_breached,
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.REDUCE_ONLY_WOULD_INCREASE
        assert refusal.limit == D(held)
        assert refusal.value == D(after)
        assert f"from {D(held):.2f} to {D(after):.2f}" in refusal.message

    @pytest.mark.parametrize(
        ("held", "side", "after"),
        [("1", Side.SELL, "-0.00000001"), ("-1", Side.BUY, "0.00000001")],
    )
    def test_it_refuses_a_reduce_only_order_one_step_past_zero(
        self, held: str, side: Side, after: str
    ) -> None:
        decision = check(
            make_intent(D("1") + STEP, "50000", side=side, reduce_only=True),
            positions={"BTCUSDT": D(held)},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.REDUCE_ONLY_WOULD_INCREASE
        assert refusal.limit == D(held)
        assert refusal.value == D(after)
        assert f"to {after}:" in refusal.message

    def test_it_refuses_a_reduce_only_order_with_no_position_to_reduce(self) -> None:
        decision = check(make_intent(reduce_only=True), positions={"ETHUSDT": D("1")})

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.REDUCE_ONLY_WOULD_INCREASE
        assert (refusal.limit, refusal.value) == (D("0"), D("1"))


# --- marks ----------------------------------------------------------------------------------


class TestMissingMarks:
    def test_it_fails_closed_when_another_held_symbol_has_no_mark(self) -> None:
        decision = check(
            make_intent("0.001", "50000"),
            positions={"SOLUSDT": D("-2"), "ETHUSDT": D("1"), "XRPUSDT": D("5")},
            marks={"XRPUSDT": D("0.5")},
            # Breached on any valuation: still only the missing mark is reported.
            limits=make_limits(max_gross_exposure=D("0"), max_leverage=D("0")),
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MISSING_MARK
        assert (refusal.limit, refusal.value) == (None, None)
        assert "ETHUSDT, SOLUSDT" in refusal.message

    @pytest.mark.parametrize("mark", ["0", "-1", "NaN", "Infinity"])
    def test_it_treats_an_unusable_mark_as_missing(self, mark: str) -> None:
        decision = check(
            make_intent("1", "50000"),
            positions={"ETHUSDT": D("1")},
            marks={"ETHUSDT": D(mark)},
        )

        assert only_refusal(decision).code == RefusalCode.MISSING_MARK

    @pytest.mark.parametrize("mark", ["0", "NaN"])
    def test_it_refuses_when_the_intents_own_mark_is_given_but_unusable(self, mark: str) -> None:
        decision = check(make_intent("1", "50000"), marks={"BTCUSDT": D(mark)})

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.MISSING_MARK
        assert "BTCUSDT" in refusal.message

    def test_it_needs_no_mark_for_the_intents_own_symbol_when_the_order_closes_it(self) -> None:
        decision = check(
            make_intent("1", "50000", side=Side.SELL),
            positions={"BTCUSDT": D("1")},
            marks={"BTCUSDT": D("NaN")},
        )

        assert decision.ok


# --- invalid intents ------------------------------------------------------------------------


class TestInvalidIntent:
    @pytest.mark.parametrize(
        ("quantity", "price", "symbol"),
        [
            ("0", "50000", "BTCUSDT"),
            ("-1", "50000", "BTCUSDT"),
            ("NaN", "50000", "BTCUSDT"),
            ("sNaN", "50000", "BTCUSDT"),
            ("Infinity", "50000", "BTCUSDT"),
            ("1", "0", "BTCUSDT"),
            ("1", "-50000", "BTCUSDT"),
            ("1", "NaN", "BTCUSDT"),
            ("1", "-Infinity", "BTCUSDT"),
            ("1", "50000", ""),
        ],
    )
    @pytest.mark.parametrize("reduce_only", [False, True])
    def test_it_refuses_an_invalid_intent_with_that_reason_only(
        self, quantity: str, price: str, symbol: str, reduce_only: bool
    ) -> None:
        decision = check(
            make_intent(quantity, price, symbol=symbol, reduce_only=reduce_only),
            account=make_account(halted=True, halt_reason="operator", nav=D("0")),
            limits=make_limits(kill_switch=True),
            positions={"ETHUSDT": D("1")},
        )

        refusal = only_refusal(decision)
        assert refusal.code == RefusalCode.INVALID_INTENT
        assert (refusal.limit, refusal.value) == (None, None)
        assert f"quantity {quantity} and price {price}" in refusal.message


# --- property: the same answer as a plain reference implementation --------------------------

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
UNUSABLE = (D("0"), D("-1"), D("NaN"), D("Infinity"))


@dataclass(frozen=True)
class Scenario:
    intent: OrderIntent
    account: AccountView
    limits: Limits
    positions: dict[str, Decimal]
    marks: dict[str, Decimal]
    maintenance_margin_rate: Decimal


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(low), max_value=D(high), places=places)


def rarely(chance: int, draw: st.DrawFn) -> bool:
    # Not 1: hypothesis favours the ends of a range, which would make "rarely" often.
    return draw(st.integers(min_value=1, max_value=chance)) == (chance + 1) // 2


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # Half the examples are "loose": every limit comfortably met except, now and then, one, so
    # acceptances and lone refusals are common; the rest draw every limit tightly at random.
    loose = draw(st.booleans())

    def pick(tight: st.SearchStrategy[T], easy: st.SearchStrategy[T]) -> T:
        return draw(easy) if loose and not rarely(12, draw) else draw(tight)

    positions = {
        symbol: draw(decimals("-50", "50", 3))
        for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True))
    }
    marks: dict[str, Decimal] = {}
    for symbol in SYMBOLS:
        mark = pick(st.integers(1, 20), st.just(3))
        if mark == 1:
            continue
        marks[symbol] = draw(st.sampled_from(UNUSABLE) if mark == 2 else decimals("1", "1e5", 2))
    quantity = draw(decimals("0.001", "20", 3))
    price = draw(decimals("0.01", "1e5", 2))
    if rarely(30, draw):
        quantity = draw(st.sampled_from((D("0"), D("-1"), D("NaN"))))
    if rarely(30, draw):
        price = draw(st.sampled_from((D("0"), D("-0.01"), D("Infinity"))))
    symbol = "" if rarely(50, draw) else draw(st.sampled_from(SYMBOLS))
    reduce_only = rarely(4, draw)
    held = abs(positions.get(symbol, D(0)))
    if reduce_only and held and is_a_positive_number(quantity) and draw(st.booleans()):
        # Sized against the position: part of it, all of it, or past zero by a little or a lot.
        quantity = held * draw(st.sampled_from((D("0.5"), D("1"), D("1.5"), D("2"), D("3"))))
        quantity += draw(st.sampled_from((D(0), STEP)))
    intent = OrderIntent(
        symbol=symbol,
        side=draw(st.sampled_from(Side)),
        quantity=quantity,
        price=price,
        reduce_only=reduce_only,
    )
    cooldown = st.integers(min_value=-3600, max_value=3600).map(
        lambda s: NOW + timedelta(seconds=s)
    )
    cooldown_over = st.integers(min_value=-3600, max_value=0).map(
        lambda s: NOW + timedelta(seconds=s)
    )
    account = AccountView(
        nav=pick(
            st.integers(1, 10).flatmap(
                lambda n: decimals("-1000", "0", 2) if n == 1 else decimals("0", "1e6", 2)
            ),
            decimals("1e7", "1e8", 2),
        ),
        drawdown=pick(decimals("0", "0.3", 4), decimals("0", "0.05", 4)),
        daily_loss=pick(decimals("0", "0.1", 4), decimals("0", "0.02", 4)),
        loss_streak=draw(st.integers(min_value=0, max_value=6)),
        cooldown_until=pick(st.none() | cooldown, st.none() | cooldown_over),
        halted=pick(st.booleans(), st.just(False)),
        halt_reason=draw(st.sampled_from(("", "max_drawdown breached", "operator"))),
        open_orders=pick(st.integers(0, 20), st.integers(0, 5)),
    )
    # Largest measures: order 20 x 1e5 = 2e6; position 70 x 1e5 = 7e6; gross 4 x 7e6 = 2.8e7,
    # so with a loose NAV >= 1e7 leverage <= 2.8 and liquidation distance >= 0.357 - 0.05.
    limits = make_limits(
        max_order_notional=pick(decimals("0", "2e6", 2), decimals("2e6", "1e9", 2)),
        max_position_notional=pick(decimals("0", "5e6", 2), decimals("7e6", "1e9", 2)),
        max_gross_exposure=pick(decimals("0", "2e7", 2), decimals("2.8e7", "1e9", 2)),
        max_leverage=pick(decimals("0", "50", 2), decimals("2.8", "50", 2)),
        max_daily_loss=pick(decimals("0", "0.2", 4), decimals("0.02", "0.2", 4)),
        max_drawdown=pick(decimals("0", "0.5", 4), decimals("0.05", "0.5", 4)),
        max_open_orders=pick(st.integers(0, 20), st.integers(6, 20)),
        loss_streak_limit=draw(st.integers(min_value=1, max_value=5)),
        min_liquidation_distance=pick(decimals("0", "0.5", 4), decimals("0", "0.3", 4)),
        kill_switch=pick(st.booleans(), st.just(False)),
    )
    scenario = Scenario(
        intent=intent,
        account=account,
        limits=limits,
        positions=positions,
        marks=marks,
        maintenance_margin_rate=draw(st.sampled_from((D("0"), D("0.004"), D("0.01"), D("0.05")))),
    )
    return on_a_boundary(scenario, draw)


# Limits that refuse any measurable value, so the reference reports what each check measures.
MEASURE_EVERYTHING = make_limits(
    max_order_notional=D("0"),
    max_position_notional=D("0"),
    max_gross_exposure=D("0"),
    max_leverage=D("0"),
    max_daily_loss=D("-1"),
    max_drawdown=D("-1"),
    max_open_orders=-1,
    min_liquidation_distance=D("1e9"),
)
BOUNDED = (
    "max_order_notional",
    "max_position_notional",
    "max_gross_exposure",
    "max_leverage",
    "min_liquidation_distance",
    "max_daily_loss",
    "max_drawdown",
    "max_open_orders",
)


def on_a_boundary(scenario: Scenario, draw: st.DrawFn) -> Scenario:
    """Often move one limit onto what it measures, or one step either side of it."""
    name = draw(st.sampled_from((None, *BOUNDED)))
    if name is None:
        return scenario
    measured = reference_refusals(replace(scenario, limits=MEASURE_EVERYTHING)).get(name)
    if measured is None:  # invalid, reduce-only, unvalued or no NAV: nothing measured
        return scenario
    value = measured[1]
    step: Decimal | int = 1 if isinstance(value, int) else STEP
    assert value is not None
    moved = value + draw(st.sampled_from((-1, 0, 1))) * step
    changes: dict[str, Any] = {name: moved}
    return replace(scenario, limits=replace(scenario.limits, **changes))


Numbers = tuple[Decimal | int | None, Decimal | int | None]


def is_a_positive_number(value: Decimal) -> bool:
    return not value.is_nan() and not value.is_infinite() and value > 0


def reference_refusals(s: Scenario) -> dict[str, Numbers]:
    """The definitions of SPEC §5 / risk/checks.py, written out plainly: code -> (limit, value)."""
    intent, account, limits = s.intent, s.account, s.limits
    if intent.symbol == "":
        return {"invalid_intent": (None, None)}
    for number in (intent.quantity, intent.price):
        if not is_a_positive_number(number):
            return {"invalid_intent": (None, None)}

    book: dict[str, Decimal] = {}
    for symbol in s.positions:
        book[symbol] = s.positions[symbol]
    before = book.get(intent.symbol, D(0))
    if intent.side == Side.BUY:
        book[intent.symbol] = before + intent.quantity
    else:
        book[intent.symbol] = before - intent.quantity
    after = book[intent.symbol]

    if intent.reduce_only:
        grows = abs(after) > abs(before)
        flips = (before > 0 and after < 0) or (before < 0 and after > 0)
        if grows or flips:
            return {"reduce_only_would_increase": (before, after)}
        return {}

    found: dict[str, Numbers] = {}
    if limits.kill_switch:
        found["kill_switch"] = (None, None)
    if account.halted:
        found["halted"] = (None, None)
    if account.daily_loss > limits.max_daily_loss:
        found["max_daily_loss"] = (limits.max_daily_loss, account.daily_loss)
    if account.drawdown > limits.max_drawdown:
        found["max_drawdown"] = (limits.max_drawdown, account.drawdown)
    if account.cooldown_until is not None and account.cooldown_until > NOW:
        found["loss_streak_cooldown"] = (limits.loss_streak_limit, account.loss_streak)
    if account.open_orders + 1 > limits.max_open_orders:
        found["max_open_orders"] = (limits.max_open_orders, account.open_orders + 1)
    order_notional = intent.quantity * intent.price
    if order_notional > limits.max_order_notional:
        found["max_order_notional"] = (limits.max_order_notional, order_notional)

    valued: dict[str, Decimal] = {}
    unvalued: list[str] = []
    for symbol in book:
        amount = book[symbol]
        if amount == 0:
            valued[symbol] = D(0)
            continue
        if symbol in s.marks:
            mark = s.marks[symbol]
        elif symbol == intent.symbol:
            mark = intent.price
        else:
            unvalued.append(symbol)
            continue
        if not is_a_positive_number(mark):
            unvalued.append(symbol)
            continue
        valued[symbol] = abs(amount) * mark
    if unvalued:
        found["missing_mark"] = (None, None)
    if intent.symbol in valued and valued[intent.symbol] > limits.max_position_notional:
        found["max_position_notional"] = (limits.max_position_notional, valued[intent.symbol])

    gross = D(0)
    for symbol in valued:
        gross += valued[symbol]
    if not unvalued and gross > limits.max_gross_exposure:
        found["max_gross_exposure"] = (limits.max_gross_exposure, gross)

    nav = account.nav
    if nav <= 0:
        found["non_positive_nav"] = (None, nav)
    elif not unvalued and gross != 0:
        leverage = gross / nav
        if leverage > limits.max_leverage:
            found["max_leverage"] = (limits.max_leverage, leverage)
        distance = (nav - s.maintenance_margin_rate * gross) / gross
        if distance < limits.min_liquidation_distance:
            found["min_liquidation_distance"] = (limits.min_liquidation_distance, distance)
    return found


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_it_accepts_exactly_when_a_plain_reference_implementation_finds_every_limit_holds(
    s: Scenario,
) -> None:
    decision = pretrade_check(
        intent=s.intent,
        account=s.account,
        limits=s.limits,
        positions=s.positions,
        marks=s.marks,
        now=NOW,
        maintenance_margin_rate=s.maintenance_margin_rate,
    )

    expected = reference_refusals(s)
    assert decision.ok == (not expected)
    assert len(decision.codes) == len(decision.refusals)
    assert {str(r.code): (r.limit, r.value) for r in decision.refusals} == expected
