"""Benchmark: the Monte Carlo sizer against a bare numpy bootstrap of the same size.

Not a test (pytest collects only ``test_*.py``): run ``python -m tests.benchmarks.bench_sizing``
or call ``run()``. Issue 3's goal is the sizer at most 2x the bare baseline, timed in the same
run: 10,000 paths x 250 trades, once with one candidate fraction and once with the default grid.

The baseline is the least work a bootstrap drawdown estimate needs: draw the indices, gather
the returns, cumulative sum, running max (``np.maximum.accumulate``), max drawdown per path.
Timings are the best of ``repeats`` runs (``time.perf_counter``), the three measurements
interleaved so drift on a shared machine hits them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from risk.sizing import DEFAULT_GRID, monte_carlo_fraction

PATHS = 10_000
HORIZON = 250
TRADES = 400
SEED = 20240314
DRAWDOWN_LIMIT = 0.20
ALPHA = 0.05
GOAL = 2.0

BASELINE_NAME = (
    f"bare numpy: bootstrap indices + gather + cumsum + maximum.accumulate + max drawdown "
    f"({PATHS:,} x {HORIZON})"
)


def trade_returns() -> npt.NDArray[np.float64]:
    """Fat-tailed per-trade returns at full size: Student-t(4) x 2 % + 0.2 % edge."""
    rng = np.random.default_rng(SEED)
    returns: npt.NDArray[np.float64] = rng.standard_t(4, size=TRADES) * 0.02 + 0.002
    return returns


def bare_baseline(returns: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(SEED)
    sample = returns[rng.integers(0, returns.size, size=(PATHS, HORIZON))]
    equity = np.cumsum(sample, axis=1)
    peak = np.maximum.accumulate(equity, axis=1)
    drawdown: npt.NDArray[np.float64] = (peak - equity).max(axis=1)
    return drawdown


def _sizer(returns: npt.NDArray[np.float64], grid: tuple[float, ...]) -> Callable[[], object]:
    def call() -> object:
        return monte_carlo_fraction(
            trade_returns=returns,
            horizon=HORIZON,
            paths=PATHS,
            drawdown_limit=DRAWDOWN_LIMIT,
            alpha=ALPHA,
            seed=SEED,
            grid=grid,
        )

    return call


def _seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run(*, repeats: int = 7) -> list[dict[str, object]]:
    returns = trade_returns()
    cases = {
        "baseline": lambda: bare_baseline(returns),
        f"monte_carlo_fraction, 1 fraction ({PATHS:,} paths x {HORIZON} trades)": _sizer(
            returns, (0.5,)
        ),
        (
            f"monte_carlo_fraction, default grid of {len(DEFAULT_GRID)} fractions "
            f"({PATHS:,} paths x {HORIZON} trades)"
        ): _sizer(returns, DEFAULT_GRID),
    }
    for function in cases.values():  # warm-up: imports, allocator, caches
        function()
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for name, function in cases.items():
            best[name] = min(best[name], _seconds(function))
    baseline = best.pop("baseline")
    return [
        {
            "name": name,
            "seconds": round(seconds, 6),
            "baseline_name": BASELINE_NAME,
            "baseline_seconds": round(baseline, 6),
            "ratio": round(seconds / baseline, 3),
            "goal": "≤ 2x",
            "met": seconds / baseline <= GOAL,
        }
        for name, seconds in best.items()
    ]


def main() -> None:
    for row in run():
        print(
            f"{row['name']}: {row['seconds']:.4f} s vs {row['baseline_seconds']:.4f} s "
            f"baseline = {row['ratio']}x (goal {row['goal']}: "
            f"{'met' if row['met'] else 'NOT met'})"
        )
        print(f"  baseline: {row['baseline_name']}")


if __name__ == "__main__":
    main()
