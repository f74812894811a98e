"""Signal sources: pure functions from closed bars to a view (direction and strength).

A source is a callable taking ``Bars`` (numpy arrays, oldest first) and its validated params and
returning a ``SourceOutput``: a direction (``Side``) or ``None`` for "no view", a strength in
[0, 1] as ``Decimal`` and a short reason with the numbers it was decided from.

**Decisions use closed bars only** (SPEC §6). The sources look only at what they are given and
treat the last element as the latest *closed* bar; callers must pass closed bars only (a bar
still forming would leak a price the decision could not have known in replay). The services
select bars with ``close_time <= at`` for that reason.

``SOURCES`` is the one place the bar-driven sources are listed; the ML source (``ML_SOURCE``)
decides from a stored prediction instead of bars (``ml_output``; the prediction is made by
``mlinsights``). Each source declares its params (defaults and bounds), so operators' JSON is
validated in one place (``source_params``) and ``signal_sources_sync`` knows the defaults.

No Django here: floats and numpy inside, ``Decimal`` at the boundary (``to_decimal``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from risk.limits import Side
from tradingsite.decimals import to_decimal

FloatArray = NDArray[np.float64]
Params = Mapping[str, float]

# A t-stat or z-score x maps to a strength tanh(x / SQUASH_SCALE): 1 -> 0.32, 2 -> 0.58,
# 3 -> 0.76, 4 -> 0.87. Monotone, 0 at 0 and below 1 for every finite x.
SQUASH_SCALE = 3.0
# Relative spread under which volatility counts as zero (float noise of a perfectly steady
# series is ~1e-17; real 1m bars are ~1e-4).
ZERO_SPREAD = 1e-12
MAX_WINDOW = 10_000
ZERO = Decimal(0)


@dataclass(frozen=True)
class Bars:
    """Closed bars of one symbol and interval as float arrays, oldest first.

    ``close`` is required; ``high``, ``low`` and ``volume`` are optional (no classical source
    needs them yet) and, when given, must have the same length as ``close``.
    """

    close: FloatArray
    high: FloatArray | None = None
    low: FloatArray | None = None
    volume: FloatArray | None = None

    def __post_init__(self) -> None:
        close = np.asarray(self.close, dtype=np.float64)
        if close.ndim != 1:
            raise ValueError(f"close must be a 1-D array, got {close.ndim} dimensions")
        if not bool(np.all(np.isfinite(close))) or not bool(np.all(close > 0)):
            raise ValueError("close prices must be finite and positive")
        object.__setattr__(self, "close", close)
        for name in ("high", "low", "volume"):
            values = getattr(self, name)
            if values is None:
                continue
            array = np.asarray(values, dtype=np.float64)
            if array.shape != close.shape:
                raise ValueError(f"{name} has shape {array.shape}, close has {close.shape}")
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.close)


@dataclass(frozen=True)
class SourceOutput:
    """One source's view: ``direction`` None means no view (and then strength is 0)."""

    direction: Side | None
    strength: Decimal
    reason: str

    def __post_init__(self) -> None:
        if not self.strength.is_finite() or not ZERO <= self.strength <= 1:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        if self.direction is None and self.strength != 0:
            raise ValueError("no view must have strength 0")

    @property
    def has_view(self) -> bool:
        return self.direction is not None

    @classmethod
    def no_view(cls, reason: str) -> SourceOutput:
        return cls(direction=None, strength=ZERO, reason=reason)


@dataclass(frozen=True)
class Param:
    """One param a source accepts; ``integer`` params are window lengths in bars."""

    name: str
    default: float
    minimum: float
    maximum: float
    integer: bool = False
    help: str = ""


class SignalSourceFn(Protocol):
    """A signal source: declared params, how many closed bars it needs, and the decision.

    ``__call__`` receives at least ``bars_needed(params)`` closed bars and params already
    validated by ``source_params``; it must be pure (same bars and params, same output).
    """

    @property
    def params(self) -> tuple[Param, ...]: ...

    def bars_needed(self, params: Params) -> int: ...

    def __call__(self, bars: Bars, params: Params) -> SourceOutput: ...


def _squash(x: float) -> Decimal:
    return to_decimal(math.tanh(abs(x) / SQUASH_SCALE))


def _view(direction: Side, score: float, reason: str) -> SourceOutput:
    strength = _squash(score)
    if strength == 0:
        # Too weak to show at the stored precision: a zero-strength order would size to nothing.
        return SourceOutput.no_view(f"{reason}; strength rounds to 0")
    return SourceOutput(direction=direction, strength=strength, reason=f"{reason} -> {direction}")


@dataclass(frozen=True)
class Momentum:
    """Trend following: the sign of the log return over ``lookback`` bars, when that return is
    at least ``threshold`` times the volatility expected over as many bars (one-bar log-return
    standard deviation over ``vol_window`` bars x sqrt(lookback)): a t-stat-like ratio."""

    params: tuple[Param, ...] = field(
        default=(
            Param("lookback", 60, 1, MAX_WINDOW, integer=True, help="bars of the trend"),
            Param("vol_window", 240, 2, MAX_WINDOW, integer=True, help="bars of volatility"),
            Param("threshold", 1.0, 0, 100, help="minimum |return| / expected volatility"),
        )
    )

    def bars_needed(self, params: Params) -> int:
        return max(int(params["lookback"]), int(params["vol_window"])) + 1

    def __call__(self, bars: Bars, params: Params) -> SourceOutput:
        lookback, vol_window = int(params["lookback"]), int(params["vol_window"])
        threshold = float(params["threshold"])
        log_close = np.log(bars.close[-self.bars_needed(params) :])
        trend = float(log_close[-1] - log_close[-1 - lookback])
        sigma = float(np.std(np.diff(log_close[-(vol_window + 1) :]), ddof=1))
        described = f"{lookback}-bar return {trend * 100:+.3f}%"
        if sigma <= ZERO_SPREAD:
            if trend == 0:
                return SourceOutput.no_view(f"{described}, no volatility: flat")
            # A move with no noise at all is the clearest trend there is.
            ratio = math.copysign(math.inf, trend)
        else:
            ratio = trend / (sigma * math.sqrt(lookback))
        described += f", {ratio:+.2f}x its expected volatility (threshold {threshold:g})"
        if trend == 0 or abs(ratio) < threshold:
            return SourceOutput.no_view(f"{described}: below threshold")
        return _view(Side.BUY if trend > 0 else Side.SELL, ratio, described)


@dataclass(frozen=True)
class MeanReversion:
    """Mean reversion: z-score of the last close against the mean and standard deviation of
    the ``window`` closes before it; SELL above ``+entry_z``, BUY below ``-entry_z``."""

    params: tuple[Param, ...] = field(
        default=(
            Param("window", 60, 2, MAX_WINDOW, integer=True, help="bars of the band"),
            Param("entry_z", 2.0, 0, 100, help="|z| beyond which to fade the move"),
        )
    )

    def bars_needed(self, params: Params) -> int:
        return int(params["window"]) + 1

    def __call__(self, bars: Bars, params: Params) -> SourceOutput:
        window, entry_z = int(params["window"]), float(params["entry_z"])
        # The band excludes the last close: it is what the last close is measured against.
        band = bars.close[-(window + 1) : -1]
        last = float(bars.close[-1])
        mean, spread = float(np.mean(band)), float(np.std(band, ddof=1))
        if spread <= ZERO_SPREAD * mean:
            return SourceOutput.no_view(f"{window}-bar band has no spread: z undefined")
        z = (last - mean) / spread
        described = (
            f"close {last:.8g} is z={z:+.2f} against the {window}-bar mean {mean:.8g}"
            f" (entry {entry_z:g})"
        )
        if z > entry_z:
            return _view(Side.SELL, z, described)
        if z < -entry_z:
            return _view(Side.BUY, z, described)
        return SourceOutput.no_view(f"{described}: inside the band")


SOURCES: dict[str, SignalSourceFn] = {
    "momentum": Momentum(),
    "mean_reversion": MeanReversion(),
}


ML_SOURCE = "ml"
# The ML source: a view when the active model's probability of a rise is at least ``min_edge``
# away from a coin flip, from a prediction no older than ``max_age_seconds`` (measured from the
# close of the bar it was made on).
ML_PARAMS: tuple[Param, ...] = (
    Param("min_edge", 0.05, 0, 0.5, help="minimum |probability - 0.5| for a view"),
    Param("max_age_seconds", 90, 5, 3600, integer=True, help="older predictions are stale"),
)
# Every source operators can switch and weight, bar-driven or not.
SOURCE_NAMES: tuple[str, ...] = (*SOURCES, ML_SOURCE)


def ml_output(probability: float, params: Params) -> SourceOutput:
    """The ML source's view from the probability that the close rises over the model's horizon:
    BUY above 0.5, SELL below, strength = 2 x |p - 0.5| (1 at certainty), no view inside the
    ``min_edge`` band around 0.5."""
    if not math.isfinite(probability) or not 0 <= probability <= 1:
        raise ValueError(f"a probability must be in [0, 1], got {probability!r}")
    edge = probability - 0.5
    described = f"P(rise) {probability:.4f}, edge {edge:+.4f} (min {params['min_edge']:g})"
    if edge == 0 or abs(edge) < params["min_edge"]:
        return SourceOutput.no_view(f"{described}: too close to a coin flip")
    strength = to_decimal(min(1.0, 2 * abs(edge)))
    if strength == 0:
        return SourceOutput.no_view(f"{described}; strength rounds to 0")
    direction = Side.BUY if edge > 0 else Side.SELL
    return SourceOutput(
        direction=direction, strength=strength, reason=f"{described} -> {direction}"
    )


def _declared_params(name: str) -> tuple[Param, ...]:
    if name == ML_SOURCE:
        return ML_PARAMS
    return _source(name).params


def _source(name: str) -> SignalSourceFn:
    try:
        return SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(SOURCE_NAMES))
        raise ValueError(f"unknown signal source {name!r} (known: {known})") from None


def source_defaults(name: str) -> dict[str, float]:
    """The default params of a source (what a new ``SignalSource`` row starts with)."""
    return {param.name: param.default for param in _declared_params(name)}


def _param_value(source: str, param: Param, value: object) -> float:
    where = f"{source} param {param.name!r}"
    # bool is an int in Python, and JSON true would otherwise pass as 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")
    if param.integer:
        if value != int(value):
            raise ValueError(f"{where} must be a whole number of bars, got {value!r}")
        value = int(value)
    if not param.minimum <= value <= param.maximum:
        raise ValueError(
            f"{where} must be between {param.minimum:g} and {param.maximum:g}, got {value!r}"
        )
    return value


def source_params(name: str, params: Mapping[str, Any]) -> dict[str, float]:
    """Validate a source's params (as stored in the admin's JSON), filling in defaults.

    Raises ``ValueError`` naming the source and the bad param: unknown keys, non-numbers
    (strings and booleans included), non-finite values, fractional window lengths and values
    out of bounds are all refused.
    """
    params_declared = _declared_params(name)
    if not isinstance(params, Mapping):
        raise ValueError(f"{name} params must be a JSON object, got {params!r}")
    declared = {param.name: param for param in params_declared}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"{name} has no param {unknown[0]!r} (params: {', '.join(declared)})")
    return {
        key: _param_value(name, param, params.get(key, param.default))
        for key, param in declared.items()
    }


def source_output(name: str, bars: Bars, params: Mapping[str, Any]) -> SourceOutput:
    """Run source ``name`` on closed ``bars`` (oldest first) with its ``params``.

    Raises ``ValueError`` for an unknown source or bad params; returns no view when there are
    fewer closed bars than the source needs.
    """
    source = _source(name)
    valid = source_params(name, params)
    needed = source.bars_needed(valid)
    if len(bars) < needed:
        return SourceOutput.no_view(f"{len(bars)} closed bars, {name} needs {needed}")
    return source(bars, valid)
