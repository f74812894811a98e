"""The feature pipeline: no look-ahead, and each feature against an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlinsights.features import FEATURES, WARMUP_BARS, BarsInvalid, _wilder, features


def bars(n: int = 600, *, seed: int = 7, funding: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    index = pd.date_range("2026-01-01 00:01", periods=n, freq="1min", tz="UTC", name="close_time")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.gamma(2, 50, n)},
        index=index,
    )
    if funding:
        rate = np.full(n, np.nan)
        rate[::480] = rng.normal(0.0001, 0.00005, len(rate[::480]))
        frame["funding_rate"] = rate
    return frame


def test_features_at_t_use_only_bars_closed_at_or_before_t() -> None:
    full = bars(funding=True)
    everything = features(full)
    rng = np.random.default_rng(1)
    for t in [WARMUP_BARS, 150, 333, len(full) - 2]:
        # Only the bars up to t exist ...
        truncated = features(full.iloc[: t + 1])
        pd.testing.assert_series_equal(truncated.iloc[-1], everything.iloc[t], check_names=False)
        # ... and whatever happens after t changes nothing at t.
        changed = full.copy()
        later = changed.index[t + 1 :]
        changed.loc[later, ["open", "high", "low", "close"]] *= rng.uniform(
            0.5, 2.0, (len(later), 1)
        )
        changed.loc[later, "volume"] *= 10
        changed.loc[later, "funding_rate"] = 0.5
        pd.testing.assert_frame_equal(features(changed).iloc[: t + 1], everything.iloc[: t + 1])


def test_every_feature_has_a_value_after_the_warm_up() -> None:
    frame = features(bars(funding=True))
    assert list(frame.columns) == [*FEATURES, "funding"]
    assert frame.iloc[WARMUP_BARS:].notna().all().all()
    assert frame.iloc[0][["ret_1", "vol_30", "rsi_14", "macd_signal"]].isna().all()
    assert "funding" not in features(bars()).columns


def test_returns_volatility_range_and_volume_against_plain_arithmetic() -> None:
    frame = bars(200)
    out = features(frame)
    close = frame["close"].to_numpy()
    t = 150
    assert out["ret_15"].iloc[t] == pytest.approx(math.log(close[t] / close[t - 15]))
    one_bar = np.diff(np.log(close))
    assert out["vol_30"].iloc[t] == pytest.approx(np.std(one_bar[t - 30 : t], ddof=1))
    volume = frame["volume"].to_numpy()
    previous = volume[t - 60 : t]
    assert out["volume_z_60"].iloc[t] == pytest.approx(
        (volume[t] - previous.mean()) / previous.std(ddof=1)
    )
    assert out["range"].iloc[t] == pytest.approx(
        (frame["high"].iloc[t] - frame["low"].iloc[t]) / close[t]
    )


def test_rsi_and_macd_against_a_step_by_step_reference() -> None:
    frame = bars(300, seed=3)
    out = features(frame)
    close = frame["close"].to_numpy()
    # Wilder's RSI, by hand.
    change = np.diff(close)
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    avg_gain, avg_loss = gains[:14].mean(), losses[:14].mean()
    expected = {14: 100 - 100 / (1 + avg_gain / avg_loss)}
    for i in range(15, len(close)):
        avg_gain = (avg_gain * 13 + gains[i - 1]) / 14
        avg_loss = (avg_loss * 13 + losses[i - 1]) / 14
        expected[i] = 100 - 100 / (1 + avg_gain / avg_loss)
    for i in (14, 15, 100, 299):
        assert out["rsi_14"].iloc[i] == pytest.approx(expected[i])
    assert math.isnan(out["rsi_14"].iloc[13])

    def ema(values: np.ndarray, span: int) -> np.ndarray:
        alpha, result = 2 / (span + 1), np.empty_like(values)
        result[0] = values[0]
        for i in range(1, len(values)):
            result[i] = alpha * values[i] + (1 - alpha) * result[i - 1]
        return result

    macd = ema(close, 12) - ema(close, 26)
    signal = ema(macd, 9)
    assert out["macd"].iloc[250] == pytest.approx(macd[250] / close[250])
    assert out["macd_hist"].iloc[250] == pytest.approx((macd[250] - signal[250]) / close[250])


@pytest.mark.parametrize("window", [1, 2, 14, 100])
def test_vectorised_wilder_smoothing_equals_the_bar_by_bar_recursion(window: int) -> None:
    rng = np.random.default_rng(window)
    # a diff's gains: NaN first, then >= 0 with runs of zeros (as in the RSI)
    values = np.clip(rng.normal(0, 1, 5000), 0, None)
    values[0] = np.nan
    expected = np.full(len(values), np.nan)
    average = values[1 : window + 1].mean()
    expected[window] = average
    for i in range(window + 1, len(values)):
        average += (values[i] - average) / window
        expected[i] = average

    smoothed = _wilder(pd.Series(values), window).to_numpy()

    assert np.isnan(smoothed[:window]).all()
    np.testing.assert_allclose(smoothed[window:], expected[window:], rtol=1e-12, atol=0)


def test_wilder_smoothing_stays_missing_after_a_missing_value_and_on_short_input() -> None:
    values = pd.Series([np.nan, 1.0, 2.0, 3.0, np.nan, 4.0, 5.0])
    smoothed = _wilder(values, 2)
    assert smoothed.iloc[2:4].tolist() == [1.5, 2.25]
    assert smoothed.iloc[4:].isna().all()
    assert _wilder(values.iloc[:3], 3).isna().all()


def test_funding_is_the_last_rate_known_at_the_close() -> None:
    frame = bars(1000, funding=True)
    out = features(frame)
    assert out["funding"].iloc[480] == frame["funding_rate"].iloc[480]
    assert out["funding"].iloc[700] == frame["funding_rate"].iloc[480]


def test_a_flat_market_gives_neutral_rsi_and_zero_volume_z() -> None:
    frame = bars(100)
    frame[["open", "high", "low", "close"]] = 50.0
    frame["volume"] = 10.0
    out = features(frame)
    assert out["rsi_14"].iloc[-1] == 50.0
    assert out["volume_z_60"].iloc[-1] == 0.0
    assert out["ret_60"].iloc[-1] == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="volume"), "lack column"),
        (lambda f: f.iloc[::-1], "oldest first"),
        (lambda f: f.assign(close=-1.0), "prices must be > 0"),
        (lambda f: f.assign(volume=-1.0), "volume must be >= 0"),
        (lambda f: f.assign(high=f["low"] - 1), "high is below its low"),
        (lambda f: f.assign(close=f["close"].where(f.index != f.index[7])), "no NaN"),
        (lambda f: f.assign(volume=np.inf), "no NaN or infinity"),
    ],
)
def test_bad_bars_are_refused_with_the_reason(change: object, message: str) -> None:
    with pytest.raises(BarsInvalid, match=message):
        features(change(bars(50)))  # type: ignore[operator]
