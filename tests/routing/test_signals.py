"""The classical signal sources as pure functions of closed bars (no database)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.limits import Side
from routing.signals import (
    SOURCES,
    Bars,
    SourceOutput,
    source_defaults,
    source_output,
    source_params,
)


def noisy(trend_per_bar: float, count: int = 400, *, noise: float = 0.001, seed: int = 7) -> Bars:
    """A geometric random walk with a drift per bar (log return) and Gaussian noise."""
    rng = np.random.default_rng(seed)
    steps = trend_per_bar + noise * rng.standard_normal(count - 1)
    return Bars(close=100.0 * np.exp(np.concatenate([[0.0], np.cumsum(steps)])))


def with_last(closes: list[float], last: float) -> Bars:
    return Bars(close=np.array([*closes, last]))


# A band around 100 with a sample standard deviation of about 1.
BAND = [99.0, 101.0] * 10


class TestMomentum:
    def test_it_buys_a_rising_series(self) -> None:
        output = source_output("momentum", noisy(0.001), {})

        assert output.direction is Side.BUY
        assert output.strength > Decimal("0.5")
        assert "60-bar return +" in output.reason

    def test_it_sells_a_falling_series(self) -> None:
        output = source_output("momentum", noisy(-0.001), {})

        assert output.direction is Side.SELL
        assert output.strength > Decimal("0.5")

    def test_it_has_no_view_on_a_flat_series(self) -> None:
        output = source_output("momentum", Bars(close=np.full(400, 100.0)), {})

        assert output == SourceOutput.no_view(output.reason)
        assert "flat" in output.reason

    def test_it_has_no_view_on_a_driftless_walk_below_the_threshold(self) -> None:
        # Mean-zero alternating moves: the 60-bar return is 0 or one step, far below 1 sigma.
        closes = 100.0 * np.exp(np.cumsum(np.tile([0.001, -0.001], 200)))

        output = source_output("momentum", Bars(close=closes), {"threshold": 1})

        assert output.direction is None
        assert output.strength == 0
        assert "below threshold" in output.reason

    def test_a_steady_rise_without_noise_is_the_strongest_trend(self) -> None:
        output = source_output(
            "momentum", Bars(close=np.power(1.001, np.arange(300.0)) * 100.0), {}
        )

        assert output.direction is Side.BUY
        assert output.strength == 1

    def test_a_stronger_trend_gives_a_stronger_signal(self) -> None:
        weak = source_output("momentum", noisy(0.0002), {"threshold": 0})
        strong = source_output("momentum", noisy(0.0005), {"threshold": 0})

        assert weak.direction is strong.direction is Side.BUY
        assert weak.strength < strong.strength

    def test_it_reads_only_the_last_bars_it_needs(self) -> None:
        # A crash long before the lookback and volatility windows changes nothing.
        rising = noisy(0.001).close
        crashed = rising.copy()
        crashed[:50] = 1.0
        params = {"lookback": 20, "vol_window": 100}

        assert source_output("momentum", Bars(close=crashed), params) == source_output(
            "momentum", Bars(close=rising), params
        )


class TestMeanReversion:
    def test_it_sells_a_close_above_the_band(self) -> None:
        output = source_output("mean_reversion", with_last(BAND, 103.5), {"window": 20})

        assert output.direction is Side.SELL
        assert output.strength > Decimal("0.5")
        assert "z=+3.41" in output.reason

    def test_it_buys_a_close_below_the_band(self) -> None:
        output = source_output("mean_reversion", with_last(BAND, 96.5), {"window": 20})

        assert output.direction is Side.BUY
        assert "z=-3.41" in output.reason

    def test_it_has_no_view_inside_the_band(self) -> None:
        output = source_output("mean_reversion", with_last(BAND, 101.0), {"window": 20})

        assert output.direction is None
        assert output.strength == 0
        assert "inside the band" in output.reason

    def test_the_entry_z_moves_the_band(self) -> None:
        bars = with_last(BAND, 101.5)  # z = +1.46

        assert source_output("mean_reversion", bars, {"window": 20}).direction is None
        assert (
            source_output("mean_reversion", bars, {"window": 20, "entry_z": 1}).direction
            is Side.SELL
        )

    def test_a_further_close_gives_a_stronger_signal(self) -> None:
        near = source_output("mean_reversion", with_last(BAND, 102.5), {"window": 20})
        far = source_output("mean_reversion", with_last(BAND, 104.0), {"window": 20})

        assert near.strength < far.strength

    def test_a_band_without_spread_has_no_view(self) -> None:
        output = source_output("mean_reversion", with_last([100.0] * 20, 120.0), {"window": 20})

        assert output.direction is None
        assert "no spread" in output.reason


class TestTooFewBars:
    @pytest.mark.parametrize(
        ("name", "params", "needed"),
        [
            ("momentum", {"lookback": 10, "vol_window": 30}, 31),
            ("momentum", {"lookback": 50, "vol_window": 20}, 51),
            ("mean_reversion", {"window": 20}, 21),
        ],
    )
    def test_one_bar_short_has_no_view_and_enough_bars_are_used(
        self, name: str, params: dict[str, float], needed: int
    ) -> None:
        bars = noisy(0.01, count=needed)

        short = source_output(name, Bars(close=bars.close[1:]), params)
        enough = source_output(name, bars, params)

        assert short == SourceOutput.no_view(f"{needed - 1} closed bars, {name} needs {needed}")
        assert "closed bars" not in enough.reason

    def test_no_bars_at_all_have_no_view(self) -> None:
        for name in SOURCES:
            assert source_output(name, Bars(close=np.array([])), {}).direction is None


class TestParams:
    @pytest.mark.parametrize(
        ("name", "params", "named"),
        [
            ("momentum", {"lookback": 0}, "'lookback'"),
            ("momentum", {"lookback": 2.5}, "'lookback'"),
            ("momentum", {"lookback": "20"}, "'lookback'"),
            ("momentum", {"lookback": True}, "'lookback'"),
            ("momentum", {"vol_window": 1}, "'vol_window'"),
            ("momentum", {"threshold": -0.1}, "'threshold'"),
            ("momentum", {"threshold": math.nan}, "'threshold'"),
            ("momentum", {"threshold": None}, "'threshold'"),
            ("momentum", {"lookbak": 20}, "'lookbak'"),
            ("mean_reversion", {"window": 100_001}, "'window'"),
            ("mean_reversion", {"entry_z": math.inf}, "'entry_z'"),
            ("mean_reversion", {"entry_z": -1}, "'entry_z'"),
        ],
    )
    def test_a_bad_param_is_refused_by_name(
        self, name: str, params: dict[str, object], named: str
    ) -> None:
        with pytest.raises(ValueError, match=named):
            source_output(name, noisy(0.001), params)

    def test_params_that_are_not_an_object_are_refused(self) -> None:
        with pytest.raises(ValueError, match="momentum params must be a JSON object"):
            source_output("momentum", noisy(0.001), [20])  # type: ignore[arg-type]

    def test_an_unknown_source_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match=r"unknown signal source 'nope' \(known: "):
            source_output("nope", noisy(0.001), {})

    def test_missing_params_take_their_defaults_and_whole_floats_count_as_bars(self) -> None:
        assert source_params("momentum", {"lookback": 20.0}) == {
            "lookback": 20,
            "vol_window": 240,
            "threshold": 1.0,
        }
        assert source_defaults("mean_reversion") == {"window": 60, "entry_z": 2.0}

    def test_every_source_accepts_its_own_defaults(self) -> None:
        for name in SOURCES:
            assert source_params(name, source_defaults(name)) == source_defaults(name)


class TestBars:
    def test_it_refuses_prices_that_are_not_positive_and_finite(self) -> None:
        for bad in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ValueError, match="finite and positive"):
                Bars(close=np.array([100.0, bad]))

    def test_optional_columns_must_match_the_closes(self) -> None:
        with pytest.raises(ValueError, match="volume has shape"):
            Bars(close=np.array([1.0, 2.0]), volume=np.array([1.0]))


# Random walks of 2..300 bars with per-bar log returns up to +-20%, and random valid params.
walks = st.lists(
    st.floats(min_value=-0.2, max_value=0.2, allow_nan=False), min_size=1, max_size=299
).map(lambda steps: Bars(close=100.0 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))))
windows = st.integers(min_value=2, max_value=120)
levels = st.floats(min_value=0, max_value=5, allow_nan=False)


def assert_well_formed(output: SourceOutput) -> None:
    assert Decimal(0) <= output.strength <= Decimal(1)
    exponent = output.strength.as_tuple().exponent
    assert isinstance(exponent, int)
    assert exponent >= -8
    assert (output.direction is None) == (output.strength == 0)
    assert output.reason


@settings(max_examples=300, deadline=None)
@given(bars=walks, lookback=windows, vol_window=windows, threshold=levels)
def test_momentum_is_well_formed_and_follows_the_return(
    bars: Bars, lookback: int, vol_window: int, threshold: float
) -> None:
    params = {"lookback": lookback, "vol_window": vol_window, "threshold": threshold}

    output = source_output("momentum", bars, params)

    assert_well_formed(output)
    if output.direction is not None:
        trend = math.log(bars.close[-1] / bars.close[-1 - lookback])
        assert (output.direction is Side.BUY) == (trend > 0)
        assert trend != 0


@settings(max_examples=300, deadline=None)
@given(bars=walks, window=windows, entry_z=levels)
def test_mean_reversion_is_well_formed_and_fades_the_move(
    bars: Bars, window: int, entry_z: float
) -> None:
    output = source_output("mean_reversion", bars, {"window": window, "entry_z": entry_z})

    assert_well_formed(output)
    if output.direction is not None:
        band = bars.close[-(window + 1) : -1]
        mean, spread = float(np.mean(band)), float(np.std(band, ddof=1))
        z = (bars.close[-1] - mean) / spread
        assert abs(z) > entry_z
        assert (output.direction is Side.SELL) == (bars.close[-1] > mean)
