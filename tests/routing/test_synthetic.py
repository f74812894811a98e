from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from routing.synthetic import (
    GarchParams,
    SyntheticMarket,
    garch_log_returns,
    garch_trend_log_returns,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def market(seed: int = 7) -> SyntheticMarket:
    return SyntheticMarket(
        prices={"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000")},
        tick_sizes={"BTCUSDT": Decimal("0.1"), "ETHUSDT": Decimal("0.01")},
        seed=seed,
    )


def test_the_same_seed_gives_the_same_prices() -> None:
    a, b = market(), market()
    assert [a.advance("BTCUSDT") for _ in range(50)] == [b.advance("BTCUSDT") for _ in range(50)]
    assert market(8).advance("BTCUSDT") != market(7).advance("BTCUSDT")


def test_prices_stay_on_the_tick_grid() -> None:
    m = market()
    for _ in range(200):
        assert m.advance("ETHUSDT") % Decimal("0.01") == 0


def test_returns_cluster_in_volatility() -> None:
    # given a long GARCH series
    returns, _ = garch_log_returns(steps=40_000, params=GarchParams(), rng=np.random.default_rng(3))
    squared = returns**2

    def lag1_autocorrelation(x: np.ndarray) -> float:
        return float(np.corrcoef(x[:-1], x[1:])[0, 1])

    # then big moves follow big moves (squared returns are autocorrelated) ...
    clustered = lag1_autocorrelation(squared)
    # ... which the same returns in random order do not show
    shuffled = lag1_autocorrelation(np.random.default_rng(4).permutation(squared))
    assert clustered > 0.05
    assert abs(shuffled) < 0.02
    # and the average variance is the process's long-run variance
    assert squared.mean() == pytest.approx(GarchParams().long_run_variance, rel=0.15)


def test_bars_are_consecutive_and_consistent() -> None:
    bars = market().bars("BTCUSDT", start=START, interval=timedelta(minutes=1), count=300)
    assert [b.open_time for b in bars] == [START + timedelta(minutes=i) for i in range(300)]
    for previous, bar in itertools.pairwise(bars):
        assert bar.open == previous.close
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.close_time < bar.open_time + timedelta(minutes=1)
        assert bar.volume >= 0


def test_invalid_garch_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha \\+ beta < 1"):
        GarchParams(alpha=0.5, beta=0.5)


def test_momentum_makes_the_next_returns_follow_the_recent_trend() -> None:
    def trend_follow(momentum: float) -> float:
        # the correlation between the last 180 steps' return and the next 180 steps'
        returns, _, _ = garch_trend_log_returns(
            steps=360_000,
            params=GarchParams(momentum=momentum),
            rng=np.random.default_rng(5),
            variance=None,
            trend=0.0,
        )
        blocks = returns.reshape(-1, 180).sum(axis=1)
        return float(np.corrcoef(blocks[:-1], blocks[1:])[0, 1])

    assert abs(trend_follow(0.0)) < 0.03
    assert trend_follow(0.6) > 0.1


def test_no_momentum_is_exactly_the_plain_garch_walk() -> None:
    plain, plain_var = garch_log_returns(
        steps=500, params=GarchParams(), rng=np.random.default_rng(9)
    )
    with_trend, var, _ = garch_trend_log_returns(
        steps=500,
        params=GarchParams(momentum=0.0),
        rng=np.random.default_rng(9),
        variance=None,
        trend=0.25,
    )
    assert np.array_equal(plain, with_trend)
    assert plain_var == var


def test_a_restored_market_continues_its_trend() -> None:
    params = GarchParams(momentum=0.6)

    def trending(seed: int = 7) -> SyntheticMarket:
        return SyntheticMarket(
            prices={"BTCUSDT": Decimal("60000")},
            tick_sizes={"BTCUSDT": Decimal("0.1")},
            seed=seed,
            params=params,
        )

    straight = trending()
    straight.path("BTCUSDT", steps=100)
    expected = straight.path("BTCUSDT", steps=50)

    first = trending()
    first.path("BTCUSDT", steps=100)
    second = trending()
    second.restore(first.state())
    assert second.path("BTCUSDT", steps=50) == expected
    assert "trend" in first.state()["BTCUSDT"]


def test_invalid_momentum_is_refused() -> None:
    with pytest.raises(ValueError, match="momentum must be in"):
        GarchParams(momentum=1.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        GarchParams(momentum=0.5, momentum_steps=0)
