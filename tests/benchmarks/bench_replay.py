"""Benchmark: a replay of one month of one symbol's 1-minute bars, beside backtesting.py.

Issue 9, item 4. Not a test: ``make bench`` calls ``run()`` with Django set up on its
PostgreSQL database (``python -m tests.benchmarks.bench_replay`` runs it alone).

The bars: ``BENCH_REPLAY_DAYS`` days (default 1: 1,440 bars, so that ``make bench`` takes
minutes; 30 replays the whole month, about an hour at today's rate) of a seeded synthetic BTCUSDT
path (``routing.synthetic``: GARCH(1,1) with Student-t shocks, about 0.1 % per bar, prices on
the 0.1 tick) and the replay's 24 h of warm-up bars before them, stored as ``MarketBar`` rows
in a fixed past month (whatever the benchmark database held of BTCUSDT 1m bars there is
replaced, and the rows are deleted at the end).

1. The replay: ``replay_create`` + ``replay_start`` over those bars with the enabled signal
   sources at their default params (momentum and mean reversion; the ML source, as the
   database has it, finds no model of that time), a starting NAV of 10,000, the default
   2 bps slippage and taker fee 0.0005, and the global limits at their install defaults.
   Timed end to end (the run's schema made and filled, the bars read, every tick, the router
   health at the end), once.
   The run's schema and row are dropped afterwards. INFO logging is off while it runs (each
   source logs its decision on every bar).
2. The baseline, in the same run on the same bars: backtesting.py running a momentum rule in
   the spirit of ``routing.signals.Momentum`` with its default params (the sign of the
   ``lookback``-bar log return when it is at least ``threshold`` times the one-bar volatility
   over ``vol_window`` bars x sqrt(lookback)): long or short half the equity, held until the
   opposite view; commission 0.0005 and a 2 bps spread, market orders filled at the next
   bar's open (``trade_on_close=False``), as the replay fills them. ``Backtest.run()`` is
   timed, best of 3. Equivalent in spirit, not trade for trade: the replay also runs mean
   reversion, sizes by volatility target and signal strength, checks every order against the
   risk limits and keeps a stop under each position.

Both figures are per replayed bar (the decision points; the baseline is also given the
warm-up bars, and its time is divided by the same count). Goal: a month of one symbol
replayed within 15 minutes, i.e. at least 48 bars/s. A shorter run's rate is extrapolated to
the month, and the note says so: it flatters the month, since a replay slows as its run's
history grows (the 30-day run of 2026-11-26 went from 16.8 bars/s in its first chunk of ticks
to 11.9 in its last).

Global limits and signal sources are set for the run and put back afterwards; a run left by an
interrupted benchmark (its actor is ``ACTOR``) is dropped first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

    from routing.synthetic import SyntheticBar

SYMBOL = "BTCUSDT"
INTERVAL = "1m"
START = datetime(2025, 6, 2, tzinfo=UTC)  # a fixed past month: a replay cannot end in the future
DEFAULT_DAYS = 1.0
MONTH_BARS = 30 * 1440
BAR = timedelta(minutes=1)
WARMUP_BARS = 24 * 60  # routing.replay.WARMUP
SEED = 20260901
START_PRICE = Decimal("60000")
TICK = Decimal("0.1")
# About 0.03 % per GARCH step, 12 steps per bar: about 0.1 % per 1-minute bar, like BTC.
GARCH_OMEGA = 2e-9
NAV = Decimal("10000")
SLIPPAGE_BPS = Decimal("2")
COMMISSION = 0.0005  # routing.replay.FEE_DEFAULTS["taker_fee"]
BASELINE_CASH = 10_000_000  # whole units of a 60,000 price at half the equity
BASELINE_FRACTION = 0.5  # routing.executor.MAX_FRACTION
BASELINE_REPEATS = 3
ACTOR = "bench-replay"
PROBE_BARS = 240  # an untimed extra replay of the first bars: where a tick's time goes
STEPS = (
    "step_risk_state",
    "step_instruments",
    "step_market_data",
    "step_ml_score",
    "step_signals",
    "step_size_and_check",
    "step_route",
    "step_fills",
    "step_protection",
    "step_nav",
    "step_autotune",
    "step_heartbeat",
)
GOAL_MINUTES = 15
GOAL_BARS_PER_SECOND = 30 * 1440 / (GOAL_MINUTES * 60)  # 48


def _replay_bars_count() -> int:
    """Bars to replay (decision points), from ``BENCH_REPLAY_DAYS`` (fractions allowed)."""
    raw = os.environ.get("BENCH_REPLAY_DAYS", "").strip()
    days = float(raw) if raw else DEFAULT_DAYS
    count = round(days * 1440)
    if count < 1:
        raise ValueError(f"BENCH_REPLAY_DAYS={raw!r} gives no bar to replay")
    return count


# --- the bars ------------------------------------------------------------------------------


def _synthetic_bars(count: int) -> list[SyntheticBar]:
    """The warm-up bars and ``count`` bars from ``START``, deterministic under ``SEED``."""
    from routing.synthetic import GarchParams, SyntheticMarket

    market = SyntheticMarket(
        prices={SYMBOL: START_PRICE},
        tick_sizes={SYMBOL: TICK},
        seed=SEED,
        params=GarchParams(omega=GARCH_OMEGA),
    )
    bars = market.bars(
        SYMBOL, start=START - WARMUP_BARS * BAR, interval=BAR, count=WARMUP_BARS + count
    )
    for bar in bars:  # what the engine and the baseline both rely on
        assert bar.low > 0
        assert bar.volume > 0
        assert bar.high >= max(bar.open, bar.close)
        assert bar.low <= min(bar.open, bar.close)
    return bars


def _bars_delete(bars: Sequence[SyntheticBar]) -> None:
    from routing.models import MarketBar

    MarketBar.objects.filter(
        symbol=SYMBOL,
        interval=INTERVAL,
        open_time__gte=bars[0].open_time,
        open_time__lte=bars[-1].open_time,
    ).delete()


def _bars_store(bars: Sequence[SyntheticBar]) -> None:
    from routing.models import MarketBar

    _bars_delete(bars)
    MarketBar.objects.bulk_create(
        (
            MarketBar(
                symbol=SYMBOL,
                interval=INTERVAL,
                open_time=bar.open_time,
                close_time=bar.close_time,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
            )
            for bar in bars
        ),
        batch_size=5000,
    )


def _frame(bars: Sequence[SyntheticBar]) -> pd.DataFrame:
    """The same bars as backtesting.py takes them."""
    import pandas as pd

    return pd.DataFrame(
        {
            "Open": [float(bar.open) for bar in bars],
            "High": [float(bar.high) for bar in bars],
            "Low": [float(bar.low) for bar in bars],
            "Close": [float(bar.close) for bar in bars],
            "Volume": [float(bar.volume) for bar in bars],
        },
        index=pd.DatetimeIndex([bar.open_time for bar in bars]),
    )


# --- the environment -----------------------------------------------------------------------


def _runs_drop() -> None:
    """Runs (and their schemas) left by an earlier, interrupted benchmark."""
    from routing.models import ReplayRun
    from tradingsite.replaydb import replay_database_drop

    for run in ReplayRun.objects.filter(created_by=ACTOR):
        replay_database_drop(run.pk)
        run.delete()


@contextmanager
def _sandbox() -> Iterator[None]:
    """Global limits at their install defaults, the signal sources synced with the classical
    ones on at their default params; both put back afterwards, the runs dropped."""
    import importlib

    from risk.models import RiskLimit
    from routing.models import SignalSource
    from routing.signal_services import signal_sources_sync
    from routing.signals import SOURCES, source_defaults

    defaults: dict[str, Any] = {
        **importlib.import_module("risk.migrations.0002_global_limits").DEFAULTS,
        "stop_distance": Decimal("0.05"),  # risk.migrations.0003
    }
    _runs_drop()
    created_limits = not RiskLimit.objects.filter(symbol="").exists()
    if created_limits:
        row = RiskLimit(symbol="", **defaults)
        row._change_reason = "benchmark: default limits"  # type: ignore[attr-defined]
        row.save()
    limits = RiskLimit.objects.filter(symbol="").values(*defaults).get()
    RiskLimit.objects.filter(symbol="").update(**defaults)
    created_sources = signal_sources_sync()
    saved = list(SignalSource.objects.values("pk", "enabled", "weight", "params", "updated_at"))
    for source in SignalSource.objects.filter(name__in=list(SOURCES)):
        source.enabled, source.weight = True, Decimal(1)
        source.params = source_defaults(source.name)
        source.save()
    try:
        yield
    finally:
        _runs_drop()
        for saved_row in saved:
            SignalSource.objects.filter(pk=saved_row["pk"]).update(
                enabled=saved_row["enabled"],
                weight=saved_row["weight"],
                params=saved_row["params"],
                updated_at=saved_row["updated_at"],
            )
        SignalSource.objects.filter(name__in=created_sources).delete()
        if not created_limits:  # a row created here stays: every install has one
            RiskLimit.objects.filter(symbol="").update(**limits)


# --- 1. the replay -------------------------------------------------------------------------


def _replay(count: int) -> tuple[float, Any, list[float]]:
    """Wall-clock seconds of ``replay_start`` over ``count`` bars from ``START``, the run, and
    the rate of each chunk of ticks (bars/s, as the run reports its progress)."""
    from routing.models import ReplayRun
    from routing.replay import ReplayProgress, replay_create, replay_start

    run = replay_create(
        start=START,
        end=START + count * BAR - timedelta(milliseconds=1),  # the last bar's close
        symbols=[SYMBOL],
        actor=ACTOR,
        initial_nav=NAV,
        slippage_bps=SLIPPAGE_BPS,
    )
    if run.bars_total != count:
        raise RuntimeError(f"the replay counts {run.bars_total} bars, {count} were stored")
    rates: list[float] = []

    def progress(step: ReplayProgress) -> None:
        rates.append(step.bars_per_second)

    # Two INFO lines per bar (each source's decision) would flood the benchmark's output.
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        started = time.perf_counter()
        done = replay_start(run.pk, progress=progress)
        seconds = time.perf_counter() - started
    finally:
        logging.disable(disabled)
    if done is None:
        raise RuntimeError(f"replay {run.pk} is locked by another process")
    run.refresh_from_db()
    if run.status != ReplayRun.Status.DONE or run.bars_done != count:
        raise RuntimeError(
            f"replay {run.pk} ended {run.status} after {run.bars_done} of {count} bars: {run.error}"
        )
    return seconds, run, rates


def _replay_probe(count: int) -> tuple[Any, int]:
    """An extra replay of the first ``min(count, PROBE_BARS)`` bars, untimed for the row,
    with every executor step timed and each tick's SQL statements counted on the replay's
    connection (the product's functions wrapped in this process only): the probe and the
    bars it replayed."""
    from unittest import mock

    import routing.executor
    import routing.replay
    from routing.executor import executor_tick as tick
    from tests.benchmarks.bench_routing import Probe

    probe = Probe()

    def probed_tick(context: Any, *, renew: Any = None) -> Any:
        with probe.sql(), probe.phase("tick"):
            return tick(context, renew=renew) if renew is not None else tick(context)

    bars = min(count, PROBE_BARS)
    with contextlib.ExitStack() as stack:
        for step in STEPS:
            original = getattr(routing.executor, step)
            stack.enter_context(
                mock.patch.object(routing.executor, step, probe.wrapped(step, original))
            )
        stack.enter_context(mock.patch.object(routing.replay, "executor_tick", probed_tick))
        _replay(bars)
    return probe, bars


def _replay_cause(probe: Any, bars: int, replay_rate: float) -> str:
    """Per tick, from the probe: the statements and where the time goes, by step."""
    ticks = probe.calls["tick"]
    per_tick = probe.seconds["tick"] / ticks
    ranked = sorted(STEPS, key=lambda step: -probe.seconds[step])
    steps = ", ".join(
        f"{step} {probe.seconds[step] / ticks * 1e3:.1f} ms "
        f"({probe.queries[step] / ticks:.0f} "
        f"statement{'' if round(probe.queries[step] / ticks) == 1 else 's'}, "
        f"{probe.sql_seconds[step] / ticks * 1e3:.1f} ms of them in SQL)"
        for step in ranked
        if probe.seconds[step] / ticks >= 0.0005
    )
    outside = probe.seconds["tick"] - sum(probe.seconds[step] for step in STEPS)
    budget = 1 / GOAL_BARS_PER_SECOND
    sql = probe.total_sql_seconds() / ticks
    return (
        f"Goal not met: an extra replay of the first {bars:,} bars, untimed, with each executor "
        f"step timed: {per_tick * 1e3:.1f} ms per tick ({1 / per_tick:,.1f} bars/s; the timed "
        f"run {replay_rate:,.1f}) against the {budget * 1e3:.1f} ms a tick may take at "
        f"{GOAL_BARS_PER_SECOND:.0f} bars/s; each tick ran {probe.total_queries() / ticks:.0f} "
        f"SQL statements and {probe.savepoints / ticks:.0f} savepoint statements "
        f"({sql * 1e3:.1f} ms in PostgreSQL, {sql / per_tick:.0%} of the tick; the ticks of a "
        f"chunk share one transaction); by step, slowest first: {steps}; outside the steps "
        f"{outside / ticks * 1e3:.1f} ms"
    )


# --- 2. the baseline: backtesting.py -------------------------------------------------------


def _momentum_ratio(close: Any, lookback: int, vol_window: int) -> npt.NDArray[np.float64]:
    """``routing.signals.Momentum``'s ratio at every bar: the ``lookback``-bar log return over
    the one-bar log-return standard deviation of the last ``vol_window`` bars x
    sqrt(lookback); NaN until ``max(lookback, vol_window) + 1`` bars are there."""
    import pandas as pd

    log_close = pd.Series(np.log(np.asarray(close, dtype=np.float64)))
    trend = log_close.diff(lookback)
    sigma = log_close.diff().rolling(vol_window).std(ddof=1)
    ratio: npt.NDArray[np.float64] = (trend / (sigma * np.sqrt(lookback))).to_numpy(
        dtype=np.float64
    )
    ratio[: max(lookback, vol_window)] = np.nan
    return ratio


def _strategy() -> type[Any]:
    from backtesting import Strategy

    from routing.signals import source_defaults

    params = source_defaults("momentum")

    class MomentumRule(Strategy):  # type: ignore[misc]
        lookback = int(params["lookback"])
        vol_window = int(params["vol_window"])
        threshold = float(params["threshold"])

        def init(self) -> None:
            self.ratio = self.I(
                _momentum_ratio, self.data.Close, self.lookback, self.vol_window, plot=False
            )

        def next(self) -> None:
            ratio = self.ratio[-1]
            if ratio >= self.threshold and not self.position.is_long:
                self.position.close()
                self.buy(size=BASELINE_FRACTION)
            elif ratio <= -self.threshold and not self.position.is_short:
                self.position.close()
                self.sell(size=BASELINE_FRACTION)

    return MomentumRule


def _baseline(frame: pd.DataFrame) -> tuple[float, Any]:
    """Best of ``BASELINE_REPEATS`` seconds of ``Backtest.run()``, and its stats."""
    from backtesting import Backtest

    backtest = Backtest(
        frame,
        _strategy(),
        cash=BASELINE_CASH,
        commission=COMMISSION,
        spread=float(SLIPPAGE_BPS) / 10_000,
        trade_on_close=False,
        finalize_trades=True,
    )
    best, stats = float("inf"), None
    for _ in range(BASELINE_REPEATS):
        started = time.perf_counter()
        stats = backtest.run()
        best = min(best, time.perf_counter() - started)
    return best, stats


# --- the row -------------------------------------------------------------------------------


def run() -> list[dict[str, Any]]:
    from tests.benchmarks.bench_routing import _live_pushes

    count = _replay_bars_count()
    bars = _synthetic_bars(count)
    frame = _frame(bars)
    with _live_pushes(), _sandbox():
        _bars_store(bars)
        try:
            replay_seconds, replay, rates = _replay(count)
            if count / replay_seconds < GOAL_BARS_PER_SECOND:
                probe, probe_bars = _replay_probe(count)
                cause = " " + _replay_cause(probe, probe_bars, count / replay_seconds) + "."
            else:
                cause = ""
        finally:
            _bars_delete(bars)
    baseline_seconds, stats = _baseline(frame)
    replay_rate, baseline_rate = count / replay_seconds, count / baseline_seconds
    met = replay_rate >= GOAL_BARS_PER_SECOND
    month = MONTH_BARS / replay_rate / 60
    summary = replay.summary
    days = f"{count / 1440:g} day{'' if count == 1440 else 's'}"
    measured = (
        "measured"
        if count >= MONTH_BARS
        else (
            f"extrapolated from a run of {days}; BENCH_REPLAY_DAYS=30 replays the month "
            "itself, which runs slower than its first day as the run's history grows: the "
            "30-day run of 2026-11-26 went from 16.8 bars/s in its first chunk of ticks to "
            "11.9 in its last"
        )
    )
    chunks = (
        f"; its chunks of ticks ran at {rates[0]:,.1f} bars/s first, {rates[-1]:,.1f} last, "
        f"{min(rates):,.1f} to {max(rates):,.1f}"
        if len(rates) > 1
        else ""
    )
    name = (
        f"replay of {days} of 1-minute bars of one symbol ({count:,} bars + {WARMUP_BARS:,} "
        f"warm-up; {replay_rate:,.1f} bars/s), per bar"
    )
    baseline_name = (
        f"backtesting.py {_backtesting_version()}: a momentum rule in the spirit of the "
        f"momentum source on the same bars ({baseline_rate:,.0f} bars/s), per bar"
    )
    note = (
        f"replay: {count:,} bars of {SYMBOL} ({days}, seeded synthetic GARCH path), one run, "
        f"{replay_seconds:.1f} s end to end: {replay_rate:,.1f} bars/s (the run's ticks alone "
        f"{float(summary.get('seconds', 0.0)):.1f} s{chunks}); at that rate a 30-day month "
        f"takes {month:.1f} min ({measured}; goal ≤ {GOAL_MINUTES} min, "
        f"≥ {GOAL_BARS_PER_SECOND:.0f} bars/s: {'met' if met else 'not met'}). Its sources "
        "(momentum and mean reversion at default params; no ML model of that time) made "
        f"{summary.get('signals', 0)} signals, "
        f"{summary.get('orders', 0)} orders, {summary.get('fills', 0)} fills, PnL "
        f"{Decimal(str(summary.get('pnl', '0'))):.2f} on {NAV:,}. "
        f"backtesting.py: best of {BASELINE_REPEATS} Backtest.run() over the same bars (given "
        f"the warm-up too, its time divided by the {count:,} replayed bars), "
        f"{baseline_rate:,.0f} bars/s, {int(stats['# Trades'])} trades; momentum only, "
        "equivalent in spirit, not trade for trade (no mean reversion, volatility-target "
        "sizing, risk checks or stops); commission 0.0005, 2 bps spread, fills at the next "
        f"bar's open. The replay takes {replay_seconds / baseline_seconds:,.0f}x as long."
        f"{cause}"
    )
    return [
        {
            "name": name,
            "seconds": replay_seconds / count,
            "baseline_name": baseline_name,
            "baseline_seconds": baseline_seconds / count,
            "ratio": replay_seconds / baseline_seconds,
            "goal": f"≥ {GOAL_BARS_PER_SECOND:.0f} bars/s (a month within {GOAL_MINUTES} min)",
            "met": met,
            "note": note,
        }
    ]


def _backtesting_version() -> str:
    import backtesting

    return str(getattr(backtesting, "__version__", "")).strip() or "(version unknown)"


if __name__ == "__main__":
    from tests.benchmarks.run import _setup_django

    _setup_django()
    for result in run():
        print(result)
