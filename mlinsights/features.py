"""The one feature pipeline: the same code for training and for live scoring (pure pandas).

Input: closed bars of one symbol, oldest first, indexed by their close time (a bar is only
known once it has closed). Every feature at a bar uses that bar and earlier ones only:
rolling windows and exponential averages look back, never forward, so the features of the
bar closed at ``t`` are the same whether or not later bars exist (tests prove it).

Features (a bar's row; NaN while a window is not full yet):

- ``ret_<n>``: log return over the last ``n`` bars (1, 5, 15, 60);
- ``vol_<n>``: realised volatility, the standard deviation of 1-bar log returns over ``n``
  bars (30), not annualised;
- ``rsi_14``: Wilder's relative strength index over 14 bars, in [0, 100];
- ``macd``, ``macd_signal``, ``macd_hist``: EMA(12) - EMA(26) of the close, its EMA(9) and
  their difference, each divided by the close (so symbols at any price compare);
- ``volume_z_60``: the bar's volume as a z-score against the previous 60 bars' mean and
  standard deviation (the bar itself excluded, so a spike stands out);
- ``range``: (high - low) / close of the bar;
- ``funding``: the last funding rate known at the bar's close, where the venue provides
  one (a column ``funding_rate`` of the input, forward-filled); absent otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RETURN_HORIZONS = (1, 5, 15, 60)
VOL_WINDOW = 30
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
VOLUME_WINDOW = 60

BAR_COLUMNS = ("open", "high", "low", "close", "volume")
FEATURES = (
    *(f"ret_{n}" for n in RETURN_HORIZONS),
    f"vol_{VOL_WINDOW}",
    f"rsi_{RSI_WINDOW}",
    "macd",
    "macd_signal",
    "macd_hist",
    f"volume_z_{VOLUME_WINDOW}",
    "range",
)
FUNDING = "funding"
# Bars a row needs before every feature has a value.
WARMUP_BARS = max(max(RETURN_HORIZONS), VOL_WINDOW + 1, VOLUME_WINDOW + 1, MACD_SLOW + MACD_SIGNAL)


class BarsInvalid(ValueError):
    """The bars cannot be turned into features (the message says why)."""


def _checked(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in BAR_COLUMNS if column not in bars.columns]
    if missing:
        raise BarsInvalid(f"bars lack column(s): {', '.join(missing)}")
    if not bars.index.is_monotonic_increasing or not bars.index.is_unique:
        raise BarsInvalid("bars must be indexed by close time, oldest first, without repeats")
    values = bars[list(BAR_COLUMNS)].astype(float)
    if not np.isfinite(values.to_numpy()).all():
        raise BarsInvalid("prices and volumes must be finite numbers (no NaN or infinity)")
    if (values[["open", "high", "low", "close"]] <= 0).to_numpy().any():
        raise BarsInvalid("prices must be > 0")
    if (values["volume"] < 0).any():
        raise BarsInvalid("volume must be >= 0")
    if (values["high"] < values["low"]).any():
        raise BarsInvalid("a bar's high is below its low")
    return values


def _rsi(close: pd.Series, window: int) -> pd.Series:
    """Wilder's RSI: smoothed average gain over smoothed average loss (alpha = 1/window),
    seeded by the first ``window`` changes' simple mean, as Wilder defined it."""
    change = close.diff()
    gain = change.clip(lower=0.0)
    loss = -change.clip(upper=0.0)
    average_gain = _wilder(gain, window)
    average_loss = _wilder(loss, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + average_gain / average_loss)
    # No loss in the window: 100 (or 50 when nothing moved at all).
    rsi = rsi.where(average_loss > 0, np.where(average_gain > 0, 100.0, 50.0))
    return rsi.where(average_gain.notna())


def _wilder(values: pd.Series, window: int) -> pd.Series:
    """Wilder's smoothing: the simple mean of values 1..window at bar ``window`` (value 0 is
    the NaN of a diff), then ``average += (value - average) / window`` per bar.

    That recursion is an exponential average with alpha = 1/window (adjust=False) started
    from the seed, so pandas runs it in C instead of a Python loop over every bar."""
    data = values.to_numpy(dtype=float)
    out = np.full(len(data), np.nan)
    if len(data) > window:
        seeded = data[window:].copy()
        seeded[0] = np.mean(data[1 : window + 1])
        smoothed = pd.Series(seeded).ewm(alpha=1.0 / window, adjust=False).mean().to_numpy()
        # A missing value poisons every later average in Wilder's recursion, whereas ewm
        # would step over it: keep the recursion's answer.
        poisoned = np.logical_or.accumulate(np.isnan(seeded))
        out[window:] = np.where(poisoned, np.nan, smoothed)
    return pd.Series(out, index=values.index)


def features(bars: pd.DataFrame) -> pd.DataFrame:
    """The feature rows of ``bars`` (see the module docstring), one per bar, same index."""
    values = _checked(bars)
    close = values["close"]
    log_close = pd.Series(np.log(close.to_numpy()), index=close.index)
    one_bar = log_close.diff()
    out = pd.DataFrame(index=bars.index)
    for n in RETURN_HORIZONS:
        out[f"ret_{n}"] = log_close - log_close.shift(n)
    out[f"vol_{VOL_WINDOW}"] = one_bar.rolling(VOL_WINDOW, min_periods=VOL_WINDOW).std(ddof=1)
    out[f"rsi_{RSI_WINDOW}"] = _rsi(close, RSI_WINDOW)
    fast = close.ewm(span=MACD_FAST, adjust=False, min_periods=MACD_FAST).mean()
    slow = close.ewm(span=MACD_SLOW, adjust=False, min_periods=MACD_SLOW).mean()
    macd = fast - slow
    signal = macd.ewm(span=MACD_SIGNAL, adjust=False, min_periods=MACD_SIGNAL).mean()
    out["macd"] = macd / close
    out["macd_signal"] = signal / close
    out["macd_hist"] = (macd - signal) / close
    previous = values["volume"].shift(1).rolling(VOLUME_WINDOW, min_periods=VOLUME_WINDOW)
    spread = previous.std(ddof=1)
    out[f"volume_z_{VOLUME_WINDOW}"] = (
        ((values["volume"] - previous.mean()) / spread).where(spread > 0, 0.0).where(spread.notna())
    )
    out["range"] = (values["high"] - values["low"]) / close
    if "funding_rate" in bars.columns:
        out[FUNDING] = bars["funding_rate"].astype(float).ffill()
    return out
