"""The RiskAutotuner's pure step: bounds, components against independent recomputations,
smoothing and hysteresis. No database."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import fields, replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.autotune import AutotuneConfig, AutotuneResult, autotune_step
from risk.limits import SIZE_LIMITS, Limits, limits_scaled

CONFIG = AutotuneConfig()  # target 2 %/day, vol window 20, Sharpe window 60, drawdown 5 %..15 %
FLOOR = Decimal("0.25")


def calm_returns(count: int = 120, *, seed: int = 1) -> npt.NDArray[np.float64]:
    """About 0.5 % a day of volatility with a clear edge: Sharpe far above the threshold."""
    return np.random.default_rng(seed).normal(0.002, 0.005, size=count)


def step(
    returns: npt.NDArray[np.float64] | list[float],
    *,
    drawdown: str = "0",
    previous: Decimal = Decimal(1),
    floor: Decimal = FLOOR,
    config: AutotuneConfig = CONFIG,
) -> AutotuneResult:
    return autotune_step(
        returns=np.asarray(returns, dtype=float),
        drawdown=Decimal(drawdown),
        previous=previous,
        floor=floor,
        config=config,
    )


def number(result: AutotuneResult, key: str) -> float:
    value = result.inputs[key]
    assert value is not None, key
    return float(value)


def reference_sharpe(returns: list[float], periods_per_year: float) -> float:
    return statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(periods_per_year)


# --- bounds (hypothesis) -------------------------------------------------------------------

return_values = st.one_of(
    st.floats(min_value=-0.99, max_value=3.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
size_limits = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**9), places=2)
fractions_01 = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1), places=4)
configs = st.builds(
    AutotuneConfig,
    vol_window=st.integers(min_value=2, max_value=40),
    sharpe_window=st.integers(min_value=2, max_value=80),
    smoothing=st.floats(min_value=0.01, max_value=1.0),
    hysteresis=st.floats(min_value=0.0, max_value=0.2),
)


def configured_limits(floor: Decimal, sizes: tuple[Decimal, Decimal, Decimal]) -> Limits:
    return Limits(
        max_order_notional=sizes[0],
        max_position_notional=sizes[1],
        max_gross_exposure=sizes[2],
        max_leverage=Decimal(3),
        max_daily_loss=Decimal("0.05"),
        max_drawdown=Decimal("0.20"),
        max_open_orders=10,
        loss_streak_limit=4,
        loss_streak_cooldown=timedelta(minutes=30),
        min_liquidation_distance=Decimal("0.25"),
        autotune_floor=floor,
        kill_switch=False,
    )


@settings(max_examples=300, deadline=None)
@given(
    returns=st.lists(return_values, max_size=150),
    drawdown=st.decimals(min_value=0, max_value=2, places=4),
    previous=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1), places=8),
    floor=fractions_01,
    config=configs,
    sizes=st.tuples(size_limits, size_limits, size_limits),
)
def test_autotuned_size_limits_stay_between_floor_and_configured_and_nothing_else_moves(
    returns: list[float],
    drawdown: Decimal,
    previous: Decimal,
    floor: Decimal,
    config: AutotuneConfig,
    sizes: tuple[Decimal, Decimal, Decimal],
) -> None:
    # given
    configured = configured_limits(floor, sizes)
    # when
    result = step(returns, drawdown=str(drawdown), previous=previous, floor=floor, config=config)
    scaled = limits_scaled(configured, multiplier=result.multiplier)
    # then
    assert floor <= result.multiplier <= 1
    assert result.changed == (result.multiplier != previous)
    for name in SIZE_LIMITS:
        assert floor * getattr(configured, name) <= getattr(scaled, name)
        assert getattr(scaled, name) <= getattr(configured, name)
    for field in fields(Limits):
        if field.name not in SIZE_LIMITS:
            assert getattr(scaled, field.name) == getattr(configured, field.name), field.name
    json.dumps(result.inputs, allow_nan=False)  # no NaN/inf reaches the AutotuneEvent record


@settings(max_examples=200, deadline=None)
@given(
    returns=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=100),
    previous=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1), places=8),
    floor=fractions_01,
)
def test_any_float_series_gives_a_bounded_number_and_no_warning(
    returns: list[float], previous: Decimal, floor: Decimal
) -> None:
    config = AutotuneConfig(vol_window=2, sharpe_window=2)  # use even the shortest series
    result = step(returns, previous=previous, floor=floor, config=config)
    assert result.multiplier.is_finite()
    assert floor <= result.multiplier <= 1
    json.dumps(result.inputs, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    target_drawdown=st.decimals(min_value=0, max_value=Decimal("0.3"), places=4),
    previous=st.decimals(min_value=Decimal("0.25"), max_value=Decimal(1), places=8),
    config=configs.filter(lambda config: config.hysteresis >= 0.001),
)
def test_a_change_moves_toward_the_target_by_at_least_the_band_or_not_at_all(
    target_drawdown: Decimal, previous: Decimal, config: AutotuneConfig
) -> None:
    result = step([], drawdown=str(target_drawdown), previous=previous, config=config)
    target = Decimal(repr(number(result, "target")))
    move = result.multiplier - previous
    tolerance = Decimal("1e-8")  # the multiplier is quantized to 8 places
    if result.changed:
        assert abs(move) >= Decimal(repr(config.hysteresis)) - tolerance
        assert min(previous, target) - tolerance <= result.multiplier
        assert result.multiplier <= max(previous, target) + tolerance
    else:
        assert abs(target - previous) < Decimal(repr(config.hysteresis)) + tolerance


# --- components ----------------------------------------------------------------------------


def test_a_calm_market_with_a_good_sharpe_and_no_drawdown_keeps_the_full_limits() -> None:
    # given
    returns = calm_returns()
    tail = [float(value) for value in returns[-CONFIG.sharpe_window :]]
    assert reference_sharpe(tail, CONFIG.periods_per_year) > CONFIG.sharpe_threshold
    assert statistics.stdev(returns[-CONFIG.vol_window :]) < CONFIG.target_vol
    # when
    result = step(returns, drawdown="0.01")
    # then
    assert result.multiplier == 1
    assert not result.changed
    assert result.reason.startswith("no de-risking")


def test_the_vol_component_is_target_over_the_sample_std_and_halves_when_vol_doubles() -> None:
    # given: the last window has 1.5x the target volatility, then the same series doubled
    raw = np.random.default_rng(7).standard_normal(CONFIG.vol_window)
    window = [float(value) for value in raw]
    scale = 1.5 * CONFIG.target_vol / statistics.stdev(window)
    rough = [value * scale for value in window]
    rougher = [value * 2 for value in rough]
    # when
    once = step(rough)
    twice = step(rougher)
    # then: against statistics.stdev (sample std), computed independently of numpy
    assert once.inputs["realised_vol"] == pytest.approx(statistics.stdev(rough), rel=1e-12)
    assert once.inputs["vol_component"] == pytest.approx(
        CONFIG.target_vol / statistics.stdev(rough), rel=1e-12
    )
    assert once.inputs["vol_component"] == pytest.approx(1 / 1.5, rel=1e-12)
    assert number(twice, "vol_component") == pytest.approx(number(once, "vol_component") / 2)
    assert "driven by vol" in twice.reason


def test_only_the_last_vol_window_counts() -> None:
    wild_then_calm = [0.3, -0.3] * 20 + [0.001, -0.001] * (CONFIG.vol_window // 2)
    result = step(wild_then_calm)
    assert result.inputs["vol_component"] == 1.0
    assert result.inputs["realised_vol"] == pytest.approx(
        statistics.stdev(wild_then_calm[-CONFIG.vol_window :])
    )


def test_fewer_returns_than_the_window_do_not_de_risk_and_the_reason_says_so() -> None:
    few_wild = [0.2, -0.2, 0.25] * 3  # 9 returns, far above target vol, below both windows
    result = step(few_wild, previous=Decimal(1))
    assert result.multiplier == 1
    assert result.inputs["realised_vol"] is None
    assert result.inputs["vol_component"] == 1.0
    assert result.inputs["sharpe_component"] == 1.0
    assert "9 of 20 returns, no de-risking from insufficient data" in result.reason


def test_a_sharpe_between_threshold_and_full_cut_cuts_linearly() -> None:
    # given: a series whose Sharpe sits between full cut (-1) and threshold (0.5)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(CONFIG.sharpe_window)
    noise = (noise - noise.mean()) / noise.std(ddof=1)  # mean 0, sample std 1
    wanted = -0.25  # annualised
    returns = [
        float(value * 0.004 + wanted / math.sqrt(CONFIG.periods_per_year) * 0.004)
        for value in noise
    ]
    sharpe = reference_sharpe(returns, CONFIG.periods_per_year)
    assert sharpe == pytest.approx(wanted)
    # when
    result = step(returns)
    # then
    share = (sharpe - CONFIG.sharpe_full_cut) / (CONFIG.sharpe_threshold - CONFIG.sharpe_full_cut)
    expected = float(FLOOR) + (1 - float(FLOOR)) * share
    assert result.inputs["sharpe"] == pytest.approx(sharpe, rel=1e-9)
    assert result.inputs["sharpe_component"] == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.625)
    assert "driven by Sharpe" in result.reason


def test_a_sharpe_at_or_below_the_full_cut_cuts_to_the_floor() -> None:
    returns = [float(value) for value in np.random.default_rng(5).normal(-0.01, 0.01, 90)]
    assert reference_sharpe(returns[-60:], CONFIG.periods_per_year) < CONFIG.sharpe_full_cut
    result = step(returns, config=replace(CONFIG, smoothing=1.0))
    assert result.inputs["sharpe_component"] == float(FLOOR)
    assert result.multiplier == FLOOR


def test_steady_losses_with_no_dispersion_cut_to_the_floor() -> None:
    result = step([-0.001] * 80, config=replace(CONFIG, smoothing=1.0))
    assert result.multiplier == FLOOR


def test_a_flat_account_is_not_de_risked() -> None:
    result = step([0.0] * 80)
    assert result.multiplier == 1
    assert result.inputs["realised_vol"] == 0.0


def test_drawdown_de_risks_linearly_between_start_and_full() -> None:
    halfway = step([], drawdown="0.10")  # halfway between 5 % and 15 %
    assert halfway.inputs["drawdown_component"] == pytest.approx(0.25 + 0.75 * 0.5)
    assert step([], drawdown="0.05").inputs["drawdown_component"] == 1.0
    assert step([], drawdown="0.15").inputs["drawdown_component"] == 0.25


def test_a_deep_drawdown_takes_the_multiplier_to_the_floor() -> None:
    # given: a calm, profitable market, but 30 % below the peak
    returns = calm_returns()
    # when: applied at once, and step by step with the default smoothing
    at_once = step(returns, drawdown="0.30", config=replace(CONFIG, smoothing=1.0))
    multiplier = Decimal(1)
    for _ in range(50):
        multiplier = step(returns, drawdown="0.30", previous=multiplier).multiplier
    # then
    assert at_once.multiplier == FLOOR
    assert "driven by drawdown 30.00%" in at_once.reason
    assert multiplier == FLOOR


# --- smoothing and hysteresis --------------------------------------------------------------


def test_a_change_smaller_than_the_band_is_not_applied() -> None:
    # given: drawdown 5.1 % gives a target of 0.9925, a gap of 0.0075 < band 0.02
    result = step([], drawdown="0.051", previous=Decimal(1))
    # then
    assert result.inputs["target"] == pytest.approx(0.9925)
    assert not result.changed
    assert result.multiplier == 1
    assert "held at 1" in result.reason


def test_a_change_larger_than_the_band_is_applied_one_ewma_step_at_a_time() -> None:
    # given: drawdown 10 % gives a target of 0.625, a gap of 0.375
    result = step([], drawdown="0.10", previous=Decimal(1))
    # then: alpha 0.3 of the gap
    assert result.changed
    assert result.multiplier == Decimal("0.8875")


def test_smoothing_moves_gradually_toward_the_target_and_lands_on_it() -> None:
    # given: a target at the floor (drawdown 20 %), from full size
    target = float(FLOOR)
    multiplier = Decimal(1)
    seen = [multiplier]
    # when
    for _ in range(30):
        result = step([], drawdown="0.20", previous=multiplier)
        multiplier = result.multiplier
        seen.append(multiplier)
    # then: each step closes alpha of the gap (at least one band) until it lands on the target
    for before, after in itertools.pairwise(seen):
        gap = float(before) - target
        if gap == 0:
            assert after == before
            continue
        move = max(CONFIG.smoothing * gap, CONFIG.hysteresis)
        expected = target if gap - move < CONFIG.hysteresis else float(before) - move
        assert float(after) == pytest.approx(expected, abs=1e-8)
        assert after < before
    assert seen[1] == Decimal("0.775")
    assert len(set(seen)) > 5  # gradual, not one jump
    assert seen[-1] == FLOOR


def test_recovery_raises_the_multiplier_back_to_one_gradually() -> None:
    multiplier = FLOOR
    seen = []
    for _ in range(30):
        multiplier = step(calm_returns(), previous=multiplier).multiplier
        seen.append(multiplier)
    assert seen == sorted(seen)
    assert seen[0] < Decimal("0.5")
    assert seen[-1] == 1


def test_a_previous_multiplier_below_a_raised_floor_is_lifted_to_the_floor() -> None:
    result = step(calm_returns(), drawdown="0.5", previous=Decimal("0.1"), floor=Decimal("0.4"))
    assert result.multiplier == Decimal("0.4")
    assert result.changed
    assert "clamped" in result.reason


# --- bad and missing input -----------------------------------------------------------------


def test_non_finite_returns_are_treated_as_missing() -> None:
    # given
    clean = list(calm_returns(90, seed=11) * 6)  # rough enough for the vol component to bite
    dirty = [*clean[:30], math.nan, math.inf, *clean[30:60], -math.inf, *clean[60:]]
    # when
    with_gaps = step(dirty, drawdown="0.07")
    without = step(clean, drawdown="0.07")
    # then
    assert with_gaps.multiplier == without.multiplier
    assert with_gaps.inputs["missing"] == 3
    assert with_gaps.inputs["realised_vol"] == without.inputs["realised_vol"]
    assert "3 non-finite returns ignored" in with_gaps.reason
    assert all(value is None or math.isfinite(value) for value in with_gaps.inputs.values())


def test_only_non_finite_returns_give_no_nan_and_no_de_risking_from_them() -> None:
    result = step([math.nan] * 100 + [math.inf] * 10)
    assert result.multiplier == 1
    assert result.inputs["observations"] == 0
    json.dumps(result.inputs, allow_nan=False)


@pytest.mark.parametrize(
    ("drawdown", "floor", "previous"),
    [
        ("-0.01", "0.25", "1"),
        ("NaN", "0.25", "1"),
        ("0.1", "0", "1"),
        ("0.1", "1.5", "1"),
        ("0.1", "0.25", "Infinity"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_error(
    drawdown: str, floor: str, previous: str
) -> None:
    with pytest.raises(ValueError, match="must be"):
        step([], drawdown=drawdown, floor=Decimal(floor), previous=Decimal(previous))


@pytest.mark.parametrize(
    "changes",
    [
        {"target_vol": 0.0},
        {"vol_window": 1},
        {"sharpe_threshold": -2.0},
        {"drawdown_start": 0.2},
        {"smoothing": 0.0},
        {"hysteresis": -0.1},
        {"periods_per_year": 0.0},
    ],
)
def test_an_invalid_config_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid AutotuneConfig"):
        AutotuneConfig(**changes)  # type: ignore[arg-type]
