"""Position sizers: volatility targeting (the default) and a Monte Carlo drawdown-bounded fraction.

Django-free. Floats and numpy inside; quantities and fractions leave as ``Decimal``.
The Monte Carlo sizer's fraction multiplies the vol-targeted size: the trade returns it
bootstraps are "per trade at full (vol-targeted) size, as a fraction of NAV".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

import numpy as np
import numpy.typing as npt

from tradingsite.decimals import to_decimal

# 0.05, 0.10, ..., 1.00 (i / 20 is the float nearest each, so it prints as written).
DEFAULT_GRID: tuple[float, ...] = tuple(i / 20 for i in range(1, 21))
MIN_TRADES = 20  # fewer trades than this is no evidence: the Monte Carlo sizer returns 0


def vol_target_quantity(
    *,
    nav: Decimal,
    price: Decimal,
    realised_vol: float,
    target_vol: float,
    max_fraction: Decimal,
    step_size: Decimal,
) -> Decimal:
    """Base quantity whose volatility is ``target_vol`` of NAV, capped at ``max_fraction``.

    ::

        fraction = min(max_fraction, target_vol / realised_vol)
        notional = nav x fraction                                   (USDT)
        quantity = floor(notional / price / step_size) x step_size  (base asset)

    ``realised_vol`` and ``target_vol`` are per-period volatilities of the same period (the
    instrument's realised return volatility, and what one position may add to the account's),
    so ``notional x realised_vol = nav x target_vol`` until the cap binds. ``max_fraction`` is
    notional / NAV (above 1 means leverage). The arithmetic is ``Decimal`` from the floats'
    shortest reprs, exact up to one final rounding, and the quantity is rounded DOWN to the
    exchange's ``step_size`` (never more than the target). A non-finite or non-positive
    ``realised_vol`` or a non-positive ``nav`` gives 0 (no evidence, no money: no position).

    Raises ``ValueError`` for a non-positive ``price`` or ``step_size``, a negative
    ``max_fraction`` or a negative/non-finite ``target_vol``.
    """
    if not price.is_finite() or price <= 0:
        raise ValueError(f"price must be > 0, got {price}")
    if not step_size.is_finite() or step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if not max_fraction.is_finite() or max_fraction < 0:
        raise ValueError(f"max_fraction must be >= 0, got {max_fraction}")
    if not (math.isfinite(target_vol) and target_vol >= 0):
        raise ValueError(f"target_vol must be a finite number >= 0, got {target_vol}")
    if not nav.is_finite():
        raise ValueError(f"nav must be finite, got {nav}")
    zero = Decimal(0) * step_size  # carries the step's exponent: 0.000 for step 0.001
    if not (math.isfinite(realised_vol) and realised_vol > 0) or nav <= 0:
        return zero
    target, realised = Decimal(repr(target_vol)), Decimal(repr(realised_vol))
    with localcontext() as context:
        # Products exact and one rounding (the final division), far below a step, so the
        # floor is the exact one; dividing first, 3000 x (0.01 / 0.03) would be 999.99...
        context.prec = 80
        if target < max_fraction * realised:  # target / realised < max_fraction
            exact = nav * target / (realised * price * step_size)
        else:
            exact = nav * max_fraction / (price * step_size)
        steps = exact.to_integral_value(rounding=ROUND_FLOOR)
    return steps * step_size


@dataclass(frozen=True)
class MonteCarloResult:
    fraction: Decimal  # of the vol-targeted size, one of the grid values or 0
    probability: float  # P(max drawdown > limit) at ``fraction`` (0.0 at fraction 0: no position)
    grid: tuple[float, ...]  # candidate fractions, increasing
    probabilities: tuple[float, ...]  # P at each grid value; empty when nothing was simulated
    trades: int  # finite trade returns bootstrapped from
    reason: str


def monte_carlo_fraction(
    *,
    trade_returns: npt.ArrayLike,
    horizon: int,
    paths: int,
    drawdown_limit: float,
    alpha: float,
    seed: int,
    grid: Sequence[float] = DEFAULT_GRID,
    min_trades: int = MIN_TRADES,
) -> MonteCarloResult:
    """The largest grid fraction f with P(max drawdown over ``horizon`` trades > limit) <= alpha.

    Bootstrap (with replacement, deterministic under ``seed``), from the ``n`` finite trade
    returns ``r`` (per trade at full size, fraction of NAV; non-finite values are dropped)::

        idx = numpy.random.default_rng(seed).integers(0, n, size=(horizon, paths))
        R = r[idx]                                  # R[t, p]: trade t of path p

    and for each candidate f, per path p (equity starts at 1 and is ruined, not negative,
    when a trade loses everything)::

        E_t   = prod_{s <= t} max(0, 1 + f R[s, p])
        M_t   = max(1, E_1 .. E_t)
        MDD   = max_t (1 - E_t / M_t)
        P(f)  = mean_p [MDD_p > drawdown_limit]

    The chosen fraction is the largest f on the grid with P(f) <= alpha, or 0 if there is
    none; with fewer than ``min_trades`` finite trades it is 0 too (no sizing up from no
    evidence). ``probabilities`` is P on the whole grid.

    Speed: one bootstrap sample serves every candidate. For a fixed path, the exceedance
    {MDD(f) > L} is monotone in f: for any stretch s..t, log prod (1 + f R) is concave in f and
    0 at f = 0, so the f where that stretch's loss exceeds L form an interval (f*, 1]; the path
    exceeds iff f > min over stretches of f*. So each path has one first exceeding grid index,
    found by a bisection run for all paths at once (a path-wise fraction per round): the whole
    grid costs ceil(log2(len(grid) + 1)) simulations (5 for 20 candidates), not len(grid), and
    gives exactly the per-candidate P. Each simulation walks the horizon with every path as one
    vector (E, M and the worst E/M updated in place), which keeps the working set in cache;
    numpy's ``cumprod``/``maximum.accumulate`` over a whole matrix were about 5x slower.

    Raises ``ValueError`` for horizon/paths < 1, a limit outside (0, 1), alpha outside [0, 1],
    min_trades < 1, or a grid that is empty, not strictly increasing or not within (0, 1].
    """
    candidates = tuple(float(f) for f in grid)
    _check_monte_carlo_inputs(horizon, paths, drawdown_limit, alpha, candidates, min_trades)
    values = np.asarray(trade_returns, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    trades = int(values.size)
    event = f"P(max drawdown > {drawdown_limit:.2%} over {horizon} trades)"
    if trades < min_trades:
        return MonteCarloResult(
            fraction=Decimal(0),
            probability=0.0,
            grid=candidates,
            probabilities=(),
            trades=trades,
            reason=(
                f"only {trades} finite trade returns (need {min_trades}): fraction 0, "
                "no sizing up from no evidence"
            ),
        )

    rng = np.random.default_rng(seed)
    sample = values[rng.integers(0, trades, size=(horizon, paths))]
    # A trade can only lose everything at some candidate if f x worst return <= -1; only then
    # pay for the clip that keeps equity at 0 (ruin) instead of letting it turn negative.
    ruin_possible = bool(values.min() * candidates[-1] <= -1.0)
    first = _first_exceeding_index(sample, candidates, drawdown_limit, ruin_possible)
    exceeding = np.cumsum(np.bincount(first, minlength=len(candidates) + 1))[: len(candidates)]
    curve = tuple(float(count) / paths for count in exceeding)

    allowed = [i for i, probability in enumerate(curve) if probability <= alpha]
    if not allowed:
        return MonteCarloResult(
            fraction=Decimal(0),
            probability=0.0,
            grid=candidates,
            probabilities=curve,
            trades=trades,
            reason=(
                f"no fraction keeps {event} <= {alpha:.2%}: already {curve[0]:.2%} at "
                f"{candidates[0]:g}; fraction 0 ({trades} trades, {paths} paths)"
            ),
        )
    best = allowed[-1]
    return MonteCarloResult(
        fraction=to_decimal(candidates[best]),
        probability=curve[best],
        grid=candidates,
        probabilities=curve,
        trades=trades,
        reason=(
            f"largest fraction with {event} <= {alpha:.2%}: {candidates[best]:g} "
            f"(P = {curve[best]:.2%}; {trades} trades, {paths} paths)"
        ),
    )


def _check_monte_carlo_inputs(
    horizon: int,
    paths: int,
    drawdown_limit: float,
    alpha: float,
    grid: tuple[float, ...],
    min_trades: int,
) -> None:
    problems = []
    if horizon < 1:
        problems.append(f"horizon must be >= 1, got {horizon}")
    if paths < 1:
        problems.append(f"paths must be >= 1, got {paths}")
    if not (0 < drawdown_limit < 1):
        problems.append(f"drawdown_limit must be in (0, 1), got {drawdown_limit}")
    if not (0 <= alpha <= 1):
        problems.append(f"alpha must be in [0, 1], got {alpha}")
    if min_trades < 1:
        problems.append(f"min_trades must be >= 1, got {min_trades}")
    if not grid:
        problems.append("grid is empty")
    elif not all(0 < f <= 1 for f in grid):
        problems.append(f"grid values must be in (0, 1], got {grid}")
    elif any(b <= a for a, b in itertools.pairwise(grid)):
        problems.append(f"grid must be strictly increasing, got {grid}")
    if problems:
        raise ValueError("invalid Monte Carlo sizer input: " + "; ".join(problems))


def _first_exceeding_index(
    sample: npt.NDArray[np.float64],
    grid: tuple[float, ...],
    limit: float,
    ruin_possible: bool,
) -> npt.NDArray[np.intp]:
    """Per path, the first grid index whose max drawdown exceeds ``limit`` (len(grid) if none)."""
    paths = sample.shape[1]
    fractions = np.asarray(grid, dtype=np.float64)
    low = np.zeros(paths, dtype=np.intp)  # the answer lies in [low, high]
    high = np.full(paths, len(grid), dtype=np.intp)
    first_round = True
    while True:
        open_ = low < high
        if not open_.any():
            return low
        middle = (low + high) // 2
        # Every path is simulated each round (closed ones at a harmless fraction): selecting
        # the open columns would copy the sample, which costs about as much as simulating them.
        fraction: float | npt.NDArray[np.float64]
        if first_round:
            fraction = float(fractions[int(middle[0])])  # same for every path: scalar multiply
            first_round = False
        else:
            fraction = fractions[np.minimum(middle, len(grid) - 1)]
        exceeds = _max_drawdown(sample, fraction, ruin_possible) > limit
        high = np.where(open_ & exceeds, middle, high)
        low = np.where(open_ & ~exceeds, middle + 1, low)


def _max_drawdown(
    sample: npt.NDArray[np.float64],
    fraction: float | npt.NDArray[np.float64],
    ruin_possible: bool,
) -> npt.NDArray[np.float64]:
    """Max drawdown per path of equity prod(1 + fraction x R[t]) starting at 1 (peak >= 1)."""
    paths = sample.shape[1]
    equity = np.ones(paths)
    peak = np.ones(paths)
    worst = np.ones(paths)  # lowest equity / running peak so far
    factor = np.empty(paths)
    ratio = np.empty(paths)
    # Absurd inputs (equity overflowing to inf) must not warn or poison the result with NaN:
    # fmin ignores the NaN of inf / inf.
    with np.errstate(over="ignore", invalid="ignore"):
        for trade in sample:
            np.multiply(trade, fraction, out=factor)
            factor += 1.0
            if ruin_possible:
                np.maximum(factor, 0.0, out=factor)
            equity *= factor
            np.maximum(peak, equity, out=peak)
            np.divide(equity, peak, out=ratio)
            np.fmin(worst, ratio, out=worst)
    return np.subtract(1.0, worst, out=worst)
