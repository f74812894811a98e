"""The RiskAutotuner's pure step: one multiplier in ``[floor, 1]`` for the configured size limits.

Django-free and side-effect-free, so the executor tick's autotune step (the service that reads
the account's returns and drawdown and writes an ``AutotuneEvent`` when ``changed``) stays thin
and this part is fast to test. Floats are used inside (numpy over the return series); the
multiplier crosses the boundary as a quantized ``Decimal``.

One step::

    vol      = min(1, target_vol / realised_vol)     (1 with fewer than vol_window returns)
    sharpe   = 1 at sharpe >= threshold, floor at sharpe <= full_cut, linear between
    drawdown = 1 at dd <= start, floor at dd >= full, linear between
    target   = clamp(min(vol, sharpe, drawdown), floor, 1)
    gap      = target - previous
    |gap| <  band:  keep previous                      (changed = False)
    |gap| >= band:  step = max(alpha x |gap|, band)    (EWMA, but at least one band)
                    step = |gap| if |gap| - step < band (land on the target)
                    new  = previous + sign(gap) x step

The result is applied by ``risk.limits.limits_scaled`` to the size limits only: the configured
limit is a hard cap (the multiplier is never above 1) and daily loss, drawdown and the kill
switch are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from tradingsite.decimals import quantize, to_decimal

ONE = Decimal(1)


@dataclass(frozen=True)
class AutotuneConfig:
    """Tuning of the autotuner. The defaults assume daily returns of a 24/7 crypto account.

    - ``target_vol``: per-period volatility the account is sized for (0.02 = 2 % a day,
      about 38 % a year).
    - ``vol_window``: returns in the realised-volatility window (sample standard deviation).
    - ``sharpe_window``: returns in the rolling-Sharpe window.
    - ``sharpe_threshold``: annualised Sharpe below which risk is cut (component < 1).
    - ``sharpe_full_cut``: annualised Sharpe at or below which the cut is fullest (the floor).
    - ``drawdown_start``: drawdown (fraction below the cash-flow-adjusted peak) where de-risking
      starts.
    - ``drawdown_full``: drawdown where de-risking reaches the floor; keep it below the
      configured ``max_drawdown`` so sizes are already at the floor before the halt.
    - ``smoothing``: EWMA alpha, the share of the gap to the target closed per step (0, 1].
    - ``hysteresis``: band; a gap to the target smaller than this is not acted on, and an
      applied change is never smaller than it.
    - ``periods_per_year``: annualisation of the Sharpe (365 for daily returns, 8760 hourly).
    """

    target_vol: float = 0.02
    vol_window: int = 20
    sharpe_window: int = 60
    sharpe_threshold: float = 0.5
    sharpe_full_cut: float = -1.0
    drawdown_start: float = 0.05
    drawdown_full: float = 0.15
    smoothing: float = 0.3
    hysteresis: float = 0.02
    periods_per_year: float = 365.0

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.target_vol) and self.target_vol > 0):
            problems.append(f"target_vol must be > 0, got {self.target_vol}")
        if self.vol_window < 2:
            problems.append(f"vol_window must be >= 2, got {self.vol_window}")
        if self.sharpe_window < 2:
            problems.append(f"sharpe_window must be >= 2, got {self.sharpe_window}")
        if not (
            math.isfinite(self.sharpe_threshold)
            and math.isfinite(self.sharpe_full_cut)
            and self.sharpe_full_cut < self.sharpe_threshold
        ):
            problems.append(
                f"sharpe_full_cut ({self.sharpe_full_cut}) must be below "
                f"sharpe_threshold ({self.sharpe_threshold})"
            )
        if not (0 <= self.drawdown_start < self.drawdown_full):
            problems.append(
                f"need 0 <= drawdown_start ({self.drawdown_start}) "
                f"< drawdown_full ({self.drawdown_full})"
            )
        if not (0 < self.smoothing <= 1):
            problems.append(f"smoothing must be in (0, 1], got {self.smoothing}")
        if not (0 <= self.hysteresis < 1):
            problems.append(f"hysteresis must be in [0, 1), got {self.hysteresis}")
        if not (math.isfinite(self.periods_per_year) and self.periods_per_year > 0):
            problems.append(f"periods_per_year must be > 0, got {self.periods_per_year}")
        if problems:
            raise ValueError("invalid AutotuneConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class AutotuneResult:
    multiplier: Decimal  # in [floor, 1]; what limits_scaled applies to the size limits
    changed: bool  # multiplier != previous: write an AutotuneEvent
    reason: str  # which component drove the target, with the numbers
    inputs: dict[str, float | int | None]  # finite floats only (JSON-safe) for the event record


def finite_returns(returns: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], int]:
    """The finite values of ``returns`` in order, and how many non-finite ones were dropped."""
    values = np.asarray(returns, dtype=np.float64).ravel()
    mask = np.isfinite(values)
    return values[mask], int(values.size - np.count_nonzero(mask))


def realised_volatility(returns: npt.NDArray[np.float64], *, window: int) -> float | None:
    """Sample standard deviation (ddof=1) of the last ``window`` returns; None if fewer.

    ``returns`` must already be finite (see ``finite_returns``). An overflowing series gives
    ``inf``, never NaN.
    """
    if returns.size < window:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        vol = float(np.std(returns[-window:], ddof=1))
    return vol if not math.isnan(vol) else math.inf


def annualised_sharpe(
    returns: npt.NDArray[np.float64], *, window: int, periods_per_year: float
) -> tuple[float | None, float | None]:
    """(mean, annualised Sharpe) of the last ``window`` returns; (None, None) if fewer.

    Sharpe = mean / std(ddof=1) x sqrt(periods_per_year), risk-free rate 0 (perpetual futures
    margin earns nothing). With zero (or non-finite) dispersion the Sharpe is None and the
    caller decides from the sign of the mean.
    """
    if returns.size < window:
        return None, None
    tail = returns[-window:]
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(tail))
        std = float(np.std(tail, ddof=1))
    if not math.isfinite(mean):
        mean = math.copysign(math.inf, mean) if not math.isnan(mean) else 0.0
    if not (math.isfinite(std) and std > 0):
        return mean, None
    sharpe = mean / std * math.sqrt(periods_per_year)
    return mean, sharpe if math.isfinite(sharpe) else None


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _linear_cut(value: float, *, at_one: float, at_floor: float, floor: float) -> float:
    """1 at ``at_one``, ``floor`` at ``at_floor``, linear between, flat outside."""
    share = (value - at_floor) / (at_one - at_floor)  # 1 at at_one, 0 at at_floor
    share = min(1.0, max(0.0, share))
    return floor + (1.0 - floor) * share


def _smoothed(previous: float, target: float, *, held: bool, config: AutotuneConfig) -> float:
    """One EWMA step from ``previous`` toward ``target``: at least a band, landing within one."""
    if held:
        return previous
    gap = target - previous
    step = max(config.smoothing * abs(gap), config.hysteresis)
    if abs(gap) - step < config.hysteresis:
        step = abs(gap)  # what would be left is inside the band: land on the target
    return previous + math.copysign(step, gap)


def autotune_step(
    *,
    returns: npt.ArrayLike,
    drawdown: Decimal,
    previous: Decimal,
    floor: Decimal,
    config: AutotuneConfig,
) -> AutotuneResult:
    """One autotune step: the size-limit multiplier from recent returns and the drawdown.

    ``returns`` are the account's recent periodic, cash-flow-adjusted returns, oldest first;
    non-finite values are treated as missing (dropped, counted in ``inputs["missing"]``).
    ``drawdown`` is the current fraction below the cash-flow-adjusted peak (>= 0),
    ``previous`` the multiplier in force, ``floor`` the configured lowest multiplier (0, 1].

    Components (each 1 = no de-risking):

    - volatility: ``min(1, target_vol / realised_vol)``; with fewer than ``vol_window`` finite
      returns it is 1 (no de-risking from insufficient data);
    - rolling Sharpe: 1 at ``sharpe >= sharpe_threshold``, ``floor`` at
      ``sharpe <= sharpe_full_cut``, linear between; 1 with fewer than ``sharpe_window``
      returns; with zero dispersion it is 1 unless the mean is negative (then the floor);
    - drawdown: 1 at ``drawdown <= drawdown_start``, ``floor`` at ``drawdown >= drawdown_full``,
      linear between.

    They are combined with ``min``, not the product: the three signals are strongly correlated
    (a losing stretch is usually a volatile, low-Sharpe, drawing-down stretch), so a product
    would count one bad episode two or three times and slam to the floor, while each component
    is already calibrated to reach the floor on its own. ``min`` also names exactly one driver,
    which is what ``reason`` reports. The combined target is clamped to ``[floor, 1]``.

    Smoothing and hysteresis act on the gap between the target and the (clamped) previous
    multiplier: a gap smaller than ``hysteresis`` is not acted on (``previous`` is kept,
    ``changed`` is False); otherwise the multiplier moves an EWMA step ``smoothing x gap``
    toward the target, but at least one band, and all the way to the target when less than a
    band would be left. A plain "EWMA, then hold if the step is below the band" would stall up
    to ``band / alpha`` away from the target (0.067 with the defaults) -- including *above* it,
    i.e. not de-risking when the market turns; here every applied change is at least a band
    and repeated steps reach the target exactly.

    The multiplier is never above 1 (the configured limit is a hard cap) nor below ``floor``.
    Raises ``ValueError`` for a non-finite or negative ``drawdown``, a ``floor`` outside (0, 1]
    or a non-finite ``previous``.
    """
    if not drawdown.is_finite() or drawdown < 0:
        raise ValueError(f"drawdown must be a finite fraction >= 0, got {drawdown}")
    if not floor.is_finite() or not (0 < floor <= 1):
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    if not previous.is_finite():
        raise ValueError(f"previous multiplier must be finite, got {previous}")

    floor_f = float(floor)
    values, missing = finite_returns(returns)
    notes: list[str] = []

    realised = realised_volatility(values, window=config.vol_window)
    if realised is None:
        vol_component = 1.0
        notes.append(
            f"vol: {values.size} of {config.vol_window} returns, no de-risking "
            "from insufficient data"
        )
    elif realised == 0:
        vol_component = 1.0
    else:
        vol_component = min(1.0, config.target_vol / realised)

    mean, sharpe = annualised_sharpe(
        values, window=config.sharpe_window, periods_per_year=config.periods_per_year
    )
    if mean is None:
        sharpe_component = 1.0
        notes.append(
            f"Sharpe: {values.size} of {config.sharpe_window} returns, no de-risking "
            "from insufficient data"
        )
    elif sharpe is None:
        # Zero dispersion: the Sharpe is +inf, -inf or undefined (flat) by the sign of the mean.
        sharpe_component = floor_f if mean < 0 else 1.0
        notes.append(f"Sharpe: zero dispersion, mean {mean:.6f} per period")
    else:
        sharpe_component = _linear_cut(
            sharpe,
            at_one=config.sharpe_threshold,
            at_floor=config.sharpe_full_cut,
            floor=floor_f,
        )

    drawdown_f = float(drawdown)
    drawdown_component = _linear_cut(
        -drawdown_f, at_one=-config.drawdown_start, at_floor=-config.drawdown_full, floor=floor_f
    )

    components = {
        "vol": vol_component,
        "Sharpe": sharpe_component,
        "drawdown": drawdown_component,
    }
    driver = min(components, key=lambda name: components[name])
    target = min(1.0, max(floor_f, components[driver]))

    # A floor raised since the last step lifts the multiplier in force at once.
    previous_clamped = min(ONE, max(floor, previous))
    gap = target - float(previous_clamped)
    held = abs(gap) < config.hysteresis or gap == 0
    smoothed = _smoothed(float(previous_clamped), target, held=held, config=config)
    moved = quantize(previous_clamped) if held else to_decimal(smoothed)
    multiplier = min(ONE, max(floor, moved))
    changed = multiplier != previous

    described = {
        "vol": (
            f"vol {realised:.4%} vs target {config.target_vol:.4%} → {vol_component:.4f}"
            if realised is not None
            else "vol n/a → 1.0000"
        ),
        "Sharpe": (
            f"Sharpe {sharpe:.2f} (cut below {config.sharpe_threshold:.2f}, fullest at "
            f"{config.sharpe_full_cut:.2f}) → {sharpe_component:.4f}"
            if sharpe is not None
            else f"Sharpe n/a → {sharpe_component:.4f}"
        ),
        "drawdown": (
            f"drawdown {drawdown_f:.2%} (de-risk from {config.drawdown_start:.2%}, floor at "
            f"{config.drawdown_full:.2%}) → {drawdown_component:.4f}"
        ),
    }
    if components[driver] >= 1.0:
        lead = "no de-risking: " + "; ".join(described.values())
    else:
        others = "; ".join(text for name, text in described.items() if name != driver)
        lead = f"driven by {described[driver]} ({others})"
    if previous_clamped != previous:
        notes.append(f"previous {previous} clamped to [{floor}, 1]")
    if missing:
        notes.append(f"{missing} non-finite returns ignored")
    if held and gap != 0:
        outcome = (
            f"target {target:.4f}; held at {previous_clamped} "
            f"(gap {abs(gap):.4f} < band {config.hysteresis:.4f})"
        )
    elif changed:
        outcome = f"target {target:.4f}; {previous} → {multiplier}"
    else:
        outcome = f"target {target:.4f}; unchanged at {multiplier}"
    reason = f"{lead}. {outcome}" + ("".join(f"; {note}" for note in notes))

    inputs: dict[str, float | int | None] = {
        "observations": int(values.size),
        "missing": missing,
        "realised_vol": _finite_or_none(realised),
        "target_vol": config.target_vol,
        "sharpe": sharpe,
        "mean_return": _finite_or_none(mean),
        "drawdown": _finite_or_none(drawdown_f),
        "vol_component": vol_component,
        "sharpe_component": sharpe_component,
        "drawdown_component": drawdown_component,
        "target": target,
        "smoothed": smoothed,
        "previous": _finite_or_none(float(previous)),
        "floor": floor_f,
    }
    return AutotuneResult(multiplier=multiplier, changed=changed, reason=reason, inputs=inputs)
