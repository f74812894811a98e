"""A seeded synthetic market for the paper venue: prices with volatility clustering.

Log returns follow a GARCH(1,1) process, r_t = sigma_t * z_t with Student-t(5) shocks scaled
to unit variance and sigma_t^2 = omega + alpha * r_{t-1}^2 + beta * sigma_{t-1}^2, so calm
and rough stretches alternate like real crypto markets. Everything is deterministic under the
seed: the same seed and the same calls give the same prices. Floats live inside (vectorised
numpy); prices leave as ``Decimal`` rounded to the tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

SHOCK_DOF = 5.0


@dataclass(frozen=True)
class GarchParams:
    """Per-step GARCH(1,1) parameters; the defaults give about 0.1 % per one-minute step."""

    omega: float = 2e-8
    alpha: float = 0.08
    beta: float = 0.9
    # A weak trend: each step's return drifts by ``momentum`` x the exponentially weighted mean
    # of the previous steps' returns (over about ``momentum_steps`` steps). 0 is a pure
    # GARCH random walk; the dev paper market sets a little, so that a model trained on it
    # has something real to find (and can prove it out of sample).
    momentum: float = 0.0
    momentum_steps: int = 180

    def __post_init__(self) -> None:
        if self.omega <= 0 or self.alpha < 0 or self.beta < 0 or self.alpha + self.beta >= 1:
            raise ValueError("GARCH needs omega > 0, alpha, beta >= 0 and alpha + beta < 1")
        if not 0 <= self.momentum < 1 or self.momentum_steps < 1:
            raise ValueError("momentum must be in [0, 1) over at least one step")

    @property
    def long_run_variance(self) -> float:
        return self.omega / (1 - self.alpha - self.beta)


@dataclass(frozen=True)
class SyntheticBar:
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def garch_log_returns(
    *, steps: int, params: GarchParams, rng: np.random.Generator, variance: float | None = None
) -> tuple[npt.NDArray[np.float64], float]:
    """``steps`` log returns and the conditional variance after the last one."""
    returns, var, _ = garch_trend_log_returns(
        steps=steps, params=params, rng=rng, variance=variance, trend=0.0
    )
    return returns, var


def garch_trend_log_returns(
    *,
    steps: int,
    params: GarchParams,
    rng: np.random.Generator,
    variance: float | None,
    trend: float,
) -> tuple[npt.NDArray[np.float64], float, float]:
    """``steps`` log returns, and the conditional variance and trend after the last one."""
    shocks = rng.standard_t(SHOCK_DOF, size=steps) * np.sqrt((SHOCK_DOF - 2) / SHOCK_DOF)
    returns = np.empty(steps)
    var = params.long_run_variance if variance is None else variance
    weight = 1.0 / params.momentum_steps
    # The recursion is inherently sequential; a plain loop over floats is the clear way.
    for i in range(steps):
        # With momentum 0 the drift is exactly 0.0 and r is the pure GARCH return.
        r = params.momentum * trend + np.sqrt(var) * shocks[i]
        returns[i] = r
        var = params.omega + params.alpha * r * r + params.beta * var
        trend += (r - trend) * weight
    return returns, float(var), float(trend)


class SyntheticMarket:
    """Prices per symbol that advance one step per ``advance()`` call (or per bar)."""

    def __init__(
        self,
        *,
        prices: dict[str, Decimal],
        tick_sizes: dict[str, Decimal],
        seed: int,
        params: GarchParams | None = None,
    ) -> None:
        self._params = params or GarchParams()
        self._tick = dict(tick_sizes)
        self._rngs = {
            symbol: np.random.default_rng([seed, n]) for n, symbol in enumerate(sorted(prices))
        }
        self._log_price = {symbol: float(np.log(float(p))) for symbol, p in prices.items()}
        self._variance = dict.fromkeys(prices, self._params.long_run_variance)
        self._trend = dict.fromkeys(prices, 0.0)

    @property
    def symbols(self) -> list[str]:
        return sorted(self._log_price)

    def price(self, symbol: str) -> Decimal:
        return self._rounded(symbol, float(np.exp(self._log_price[symbol])))

    def advance(self, symbol: str, *, steps: int = 1) -> Decimal:
        """Move ``symbol`` forward ``steps`` steps; return the new price."""
        path = self._path(symbol, steps)
        return self._rounded(symbol, float(path[-1]))

    def path(self, symbol: str, *, steps: int) -> list[Decimal]:
        """The prices of the next ``steps`` steps of ``symbol``, one per step.

        Drawing k steps at once gives the same prices as k calls of ``advance()``: numpy's
        generators draw the same stream whatever the chunk size.
        """
        return [self._rounded(symbol, float(value)) for value in self._path(symbol, steps)]

    def state(self) -> dict[str, Any]:
        """Everything the next prices depend on, as JSON-able values (see ``restore``).

        Floats travel as ``float.hex()`` strings and the generators' 128-bit integers as decimal
        strings, so no JSON store can round them.
        """
        return {
            symbol: {
                "log_price": self._log_price[symbol].hex(),
                "variance": self._variance[symbol].hex(),
                "trend": self._trend[symbol].hex(),
                "rng": _jsonable(self._rngs[symbol].bit_generator.state),
            }
            for symbol in self.symbols
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()`` output: the same prices follow as would have without it.
        Symbols absent from ``state`` keep their fresh start."""
        for symbol, saved in state.items():
            if symbol not in self._log_price:
                continue
            self._log_price[symbol] = float.fromhex(saved["log_price"])
            self._variance[symbol] = float.fromhex(saved["variance"])
            # States saved before the trend existed continue without one.
            self._trend[symbol] = float.fromhex(saved.get("trend", (0.0).hex()))
            self._rngs[symbol].bit_generator.state = _from_jsonable(saved["rng"])

    def bars(
        self,
        symbol: str,
        *,
        start: datetime,
        interval: timedelta,
        count: int,
        steps_per_bar: int = 12,
    ) -> list[SyntheticBar]:
        """``count`` consecutive bars from ``start``, each built from ``steps_per_bar`` steps."""
        path = self._path(symbol, count * steps_per_bar).reshape(count, steps_per_bar)
        opens = np.concatenate(([np.nan], path[:-1, -1]))
        opens[0] = path[0, 0]
        rng = self._rngs[symbol]
        volumes = rng.gamma(2.0, 50.0, size=count) * (1 + 200 * np.abs(np.log(path[:, -1] / opens)))
        bars = []
        for i in range(count):
            open_time = start + i * interval
            bars.append(
                SyntheticBar(
                    open_time=open_time,
                    close_time=open_time + interval - timedelta(milliseconds=1),
                    open=self._rounded(symbol, float(opens[i])),
                    high=self._rounded(symbol, float(max(path[i].max(), opens[i]))),
                    low=self._rounded(symbol, float(min(path[i].min(), opens[i]))),
                    close=self._rounded(symbol, float(path[i, -1])),
                    volume=Decimal(repr(round(float(volumes[i]), 3))),
                )
            )
        return bars

    def _path(self, symbol: str, steps: int) -> npt.NDArray[np.float64]:
        if steps < 1:
            raise ValueError("steps must be at least 1")
        returns, self._variance[symbol], self._trend[symbol] = garch_trend_log_returns(
            steps=steps,
            params=self._params,
            rng=self._rngs[symbol],
            variance=self._variance[symbol],
            trend=self._trend[symbol],
        )
        log_path = self._log_price[symbol] + np.cumsum(returns)
        self._log_price[symbol] = float(log_path[-1])
        path: npt.NDArray[np.float64] = np.exp(log_path)
        return path

    def _rounded(self, symbol: str, value: float) -> Decimal:
        tick = self._tick[symbol]
        ticks = (Decimal(repr(value)) / tick).to_integral_value(rounding=ROUND_HALF_EVEN)
        return max(tick, ticks * tick)


def _jsonable(value: Any) -> Any:
    """A bit generator's state with its (128-bit) integers as strings."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {"int": str(value)}
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {key: _from_jsonable(item) for key, item in value.items()}
    return value
