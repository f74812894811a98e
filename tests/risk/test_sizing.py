"""Sizers: the volatility-targeted quantity against hand and exact-rational computations, and the
Monte Carlo fraction against a plain-loop recomputation over the same bootstrap draws."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.sizing import DEFAULT_GRID, MonteCarloResult, monte_carlo_fraction, vol_target_quantity

# --- volatility-targeted sizer -------------------------------------------------------------


def quantity(**overrides: object) -> Decimal:
    arguments: dict[str, object] = {
        "nav": Decimal(10_000),
        "price": Decimal(50_000),
        "realised_vol": 0.04,
        "target_vol": 0.02,
        "max_fraction": Decimal(1),
        "step_size": Decimal("0.001"),
    }
    arguments.update(overrides)
    return vol_target_quantity(**arguments)  # type: ignore[arg-type]


def test_the_vol_targeted_quantity_matches_a_hand_computation() -> None:
    # 10,000 USDT x min(1, 0.02 / 0.04) = 5,000 USDT; / 50,000 = 0.1 BTC
    assert quantity() == Decimal("0.100")


def test_the_fraction_is_capped_at_max_fraction() -> None:
    # 0.02 / 0.005 = 4 > 1.5: 10,000 x 1.5 = 15,000 USDT; / 50,000 = 0.3
    assert quantity(realised_vol=0.005, max_fraction=Decimal("1.5")) == Decimal("0.300")


def test_the_quantity_is_rounded_down_to_the_step_size() -> None:
    # 5,000 / 30,000 = 0.1666... -> 0.166, not 0.167
    assert quantity(price=Decimal(30_000)) == Decimal("0.166")
    # a step that is not a power of ten: 1,000 x 0.5 / 0.07 = 7,142.86 -> 7,140
    assert quantity(nav=Decimal(1_000), price=Decimal("0.07"), step_size=Decimal(5)) == 7_140


def test_an_exact_multiple_of_the_step_is_not_lost_to_rounding() -> None:
    # 3,000 x (0.01 / 0.03) / 1,000 = exactly 1 (dividing first in 28 digits gives 0.99...)
    assert (
        quantity(
            nav=Decimal(3_000),
            price=Decimal(1_000),
            realised_vol=0.03,
            target_vol=0.01,
            step_size=Decimal(1),
        )
        == 1
    )


@pytest.mark.parametrize("realised_vol", [0.0, -0.01, math.nan, math.inf, -math.inf])
def test_a_zero_or_invalid_volatility_sizes_to_zero(realised_vol: float) -> None:
    assert quantity(realised_vol=realised_vol) == 0


@pytest.mark.parametrize("nav", [Decimal(0), Decimal(-100)])
def test_no_money_sizes_to_zero(nav: Decimal) -> None:
    assert quantity(nav=nav) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"price": Decimal(0)},
        {"price": Decimal(-1)},
        {"step_size": Decimal(0)},
        {"max_fraction": Decimal(-1)},
        {"target_vol": -0.01},
        {"target_vol": math.nan},
        {"nav": Decimal("NaN")},
    ],
)
def test_bad_sizer_inputs_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        quantity(**overrides)


@settings(max_examples=300, deadline=None)
@given(
    nav=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**9), places=2),
    price=st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(10**6), places=5),
    realised_vol=st.floats(min_value=1e-6, max_value=5.0),
    target_vol=st.floats(min_value=0.0, max_value=0.2),
    max_fraction=st.decimals(min_value=0, max_value=10, places=2),
    step_size=st.sampled_from([Decimal("0.001"), Decimal("0.1"), Decimal(1), Decimal(5)]),
)
def test_the_quantity_is_the_exact_floor_of_the_vol_targeted_notional(
    nav: Decimal,
    price: Decimal,
    realised_vol: float,
    target_vol: float,
    max_fraction: Decimal,
    step_size: Decimal,
) -> None:
    # given: an exact rational recomputation (the floats taken as the decimals they print as)
    fraction = min(
        Fraction(max_fraction), Fraction(repr(target_vol)) / Fraction(repr(realised_vol))
    )
    exact_steps = math.floor(Fraction(nav) * fraction / Fraction(price) / Fraction(step_size))
    # when
    result = vol_target_quantity(
        nav=nav,
        price=price,
        realised_vol=realised_vol,
        target_vol=target_vol,
        max_fraction=max_fraction,
        step_size=step_size,
    )
    # then
    assert result == exact_steps * step_size
    assert result * price <= nav * max_fraction


# --- Monte Carlo sizer ---------------------------------------------------------------------


def mixed_trades(count: int = 80, *, seed: int = 2) -> npt.NDArray[np.float64]:
    """An edge with real losers: +5 % or -4 % per trade at full size, 55/45, a little noise."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(count) < 0.55, 0.05, -0.04) + rng.normal(0, 0.002, count)


def loop_probabilities(
    trade_returns: npt.NDArray[np.float64],
    *,
    horizon: int,
    paths: int,
    drawdown_limit: float,
    seed: int,
    grid: tuple[float, ...],
) -> list[float]:
    """P(max drawdown > limit) per grid fraction, one path and one trade at a time."""
    returns = [float(value) for value in trade_returns if math.isfinite(value)]
    draws = np.random.default_rng(seed).integers(0, len(returns), size=(horizon, paths))
    probabilities = []
    for fraction in grid:
        exceeding = 0
        for path in range(paths):
            equity, peak, worst = 1.0, 1.0, 0.0
            for trade in range(horizon):
                equity *= max(0.0, 1.0 + fraction * returns[int(draws[trade, path])])
                peak = max(peak, equity)
                worst = max(worst, 1.0 - equity / peak)
            exceeding += worst > drawdown_limit
        probabilities.append(exceeding / paths)
    return probabilities


def size(trade_returns: npt.ArrayLike, **overrides: object) -> MonteCarloResult:
    arguments: dict[str, object] = {
        "horizon": 30,
        "paths": 200,
        "drawdown_limit": 0.20,
        "alpha": 0.10,
        "seed": 42,
    }
    arguments.update(overrides)
    return monte_carlo_fraction(trade_returns=trade_returns, **arguments)  # type: ignore[arg-type]


def test_the_monte_carlo_fraction_is_deterministic_under_a_seed() -> None:
    trades = mixed_trades()
    first = size(trades, paths=2_000, horizon=100)
    second = size(trades, paths=2_000, horizon=100)
    other_seed = size(trades, paths=2_000, horizon=100, seed=43)
    assert first == second
    assert first.probabilities != other_seed.probabilities


def test_the_probabilities_equal_a_plain_loop_over_the_same_bootstrap_draws() -> None:
    # given
    trades = mixed_trades()
    # when
    result = size(trades)
    reference = loop_probabilities(
        trades, horizon=30, paths=200, drawdown_limit=0.20, seed=42, grid=DEFAULT_GRID
    )
    # then: the whole curve, hence the probability at the chosen fraction
    assert list(result.probabilities) == reference
    chosen = max(i for i, probability in enumerate(reference) if probability <= 0.10)
    assert result.fraction == Decimal(repr(DEFAULT_GRID[chosen]))
    assert result.probability == reference[chosen]
    assert 0 < chosen < len(DEFAULT_GRID) - 1  # the case tells something: neither end
    # and the data bear out the monotonicity the sizer's bisection relies on
    assert all(a <= b for a, b in itertools.pairwise(reference))
    assert reference[-1] > reference[0]


@settings(max_examples=40, deadline=None)
@given(
    trades=st.lists(
        st.floats(min_value=-1.5, max_value=0.5), min_size=20, max_size=40
    ),  # losses beyond 100 % at full size included: equity is ruined at 0, never negative
    seed=st.integers(min_value=0, max_value=2**32),
    drawdown_limit=st.floats(min_value=0.01, max_value=0.9),
)
def test_the_curve_equals_the_plain_loop_for_random_trades(
    trades: list[float], seed: int, drawdown_limit: float
) -> None:
    grid = (0.1, 0.25, 0.4, 0.5, 0.7, 0.9, 1.0)
    returns = np.asarray(trades)
    result = size(
        returns, horizon=12, paths=15, drawdown_limit=drawdown_limit, seed=seed, grid=grid
    )
    reference = loop_probabilities(
        returns, horizon=12, paths=15, drawdown_limit=drawdown_limit, seed=seed, grid=grid
    )
    assert list(result.probabilities) == reference


def test_strictly_positive_trades_size_to_the_largest_fraction() -> None:
    trades = np.random.default_rng(4).uniform(0.001, 0.05, size=50)
    result = size(trades, alpha=0.0)
    assert result.fraction == Decimal(1)
    assert result.probability == 0.0
    assert set(result.probabilities) == {0.0}


def test_large_losses_size_smaller() -> None:
    # given: the same trades, then with every loser twice as deep
    mild = mixed_trades()
    severe = np.where(mild < 0, mild * 2, mild)
    # when
    mild_result = size(mild, paths=2_000, horizon=100)
    severe_result = size(severe, paths=2_000, horizon=100)
    # then
    assert Decimal(0) < severe_result.fraction < mild_result.fraction
    assert all(
        s >= m for s, m in zip(severe_result.probabilities, mild_result.probabilities, strict=True)
    )


def test_no_fraction_within_alpha_sizes_to_zero() -> None:
    disastrous = np.array([-0.5, -0.4, 0.01] * 10)
    result = size(disastrous)
    assert result.fraction == 0
    assert result.probabilities[0] > 0.10
    assert "no fraction keeps" in result.reason


@pytest.mark.parametrize(
    "trades",
    [np.array([]), np.full(19, 0.01), np.array([0.01] * 10 + [math.nan] * 20)],
    ids=["empty", "19 trades", "10 finite of 30"],
)
def test_too_few_trades_size_to_zero(trades: npt.NDArray[np.float64]) -> None:
    result = size(trades)
    assert result.fraction == 0
    assert result.probabilities == ()
    assert "no sizing up from no evidence" in result.reason


def test_non_finite_trades_are_dropped_before_bootstrapping() -> None:
    trades = mixed_trades()
    dirty = np.concatenate([trades[:40], [math.nan, math.inf, -math.inf], trades[40:]])
    assert size(dirty) == size(trades)


def test_a_single_fraction_grid_is_evaluated_alone() -> None:
    trades = mixed_trades()
    reference = loop_probabilities(
        trades, horizon=30, paths=200, drawdown_limit=0.20, seed=42, grid=(0.6,)
    )
    result = size(trades, grid=(0.6,), alpha=1.0)
    assert result.probabilities == tuple(reference)
    assert result.fraction == Decimal("0.6")


@pytest.mark.parametrize(
    "overrides",
    [
        {"horizon": 0},
        {"paths": 0},
        {"drawdown_limit": 0.0},
        {"drawdown_limit": 1.0},
        {"alpha": -0.1},
        {"grid": ()},
        {"grid": (0.5, 0.25)},
        {"grid": (0.0, 0.5)},
        {"grid": (0.5, 1.5)},
        {"min_trades": 0},
    ],
)
def test_bad_monte_carlo_inputs_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid Monte Carlo sizer input"):
        size(mixed_trades(), **overrides)
