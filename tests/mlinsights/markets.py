"""Seeded synthetic 1-minute markets for the ML tests: pure noise, or noise with a planted
momentum drift that the features can see."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from routing.models import MarketBar

N = 20_000
START = "2026-01-01 00:01"


def market(*, planted: bool, seed: int, n: int = N, start: str = START) -> pd.DataFrame:
    """1-minute bars; with ``planted``, a feature-visible drift: after a run of up-moves the
    next bars tend to go up (momentum in the last 15 bars' return)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.001, n)
    step = np.empty(n)
    log_close = np.empty(n)
    level = np.log(100.0)
    for i in range(n):
        drift = 0.0
        if planted and i >= 15:
            drift = 0.05 * (log_close[i - 1] - log_close[i - 15])
        step[i] = drift + noise[i]
        level += step[i]
        log_close[i] = level
    close = np.exp(log_close)
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0002,
            "low": np.minimum(open_, close) * 0.9998,
            "close": close,
            "volume": rng.gamma(2, 50, n),
        },
        index=index,
    )


def bars_store(frame: pd.DataFrame, *, symbol: str = "BTCUSDT") -> None:
    """Store ``frame`` (indexed by close time) as 1m ``MarketBar`` rows of ``symbol``: the bar
    closing at t opened at t - 1 minute (close times end on the minute in these tests)."""

    def price(value: object) -> Decimal:
        return Decimal(f"{value:.8f}")

    MarketBar.objects.bulk_create(
        [
            MarketBar(
                symbol=symbol,
                interval="1m",
                open_time=close_time.to_pydatetime() - timedelta(minutes=1),
                close_time=close_time.to_pydatetime(),
                open=price(row.open),
                high=price(row.high),
                low=price(row.low),
                close=price(row.close),
                volume=price(row.volume),
            )
            for close_time, row in zip(frame.index, frame.itertuples(), strict=True)
        ],
        batch_size=5000,
    )


def close_time(frame: pd.DataFrame, i: int) -> datetime:
    moment: datetime = frame.index[i].to_pydatetime()
    return moment
