"""Router-health analytics (routing/analytics.py) against independent references: returns
rebuilt from the raw fills with pandas and fed to empyrical and quantstats, trade statistics
from a plain pandas groupby, hand-built NAV curves. No database."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import empyrical  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
import quantstats
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import analytics
from routing.analytics import (
    CELL_FIELDS,
    GROUP_BY,
    METRIC_COLUMNS,
    Cells,
    FillArrays,
    OrderArrays,
    Window,
    cells_from_fills,
    cells_from_orders,
    cells_merged,
    group_curves,
    group_metrics,
    nav_curve,
)

DAY = 86_400
HOUR = 3_600
T0 = 1_735_689_600  # 2025-01-01 00:00:00 UTC, a multiple of a day
CAPITAL = 20_000.0
SOURCES = ("momentum", "mean_reversion", "breakout", "funding_carry")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
BYS: tuple[GROUP_BY, ...] = ("source", "symbol", "overall")


# --- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Random attributed fills, as arrays for the module and as a frame for the references."""

    fills: FillArrays
    frame: pd.DataFrame  # at, source, symbol (names), pnl, fee, closing, notional, slippage_bps


def scenario(
    seed: int,
    *,
    n: int = 3_000,
    days: int = 40,
    sources: tuple[str, ...] = SOURCES,
    symbols: tuple[str, ...] = SYMBOLS,
    start: int = T0,
) -> Scenario:
    rng = np.random.default_rng(seed)
    at = rng.integers(start, start + days * DAY, size=n)  # not sorted on purpose
    closing = rng.random(n) < 0.55
    notional = rng.lognormal(6.5, 0.8, size=n)
    fee = notional * 0.0004
    # Each source has its own edge so the groups differ; opening fills realise nothing.
    source = rng.integers(0, len(sources), size=n)
    edge = np.linspace(-1.0, 2.0, len(sources))[source]
    pnl = np.where(closing, rng.normal(edge, 25.0), 0.0)
    exactly_flat = closing & (rng.random(n) < 0.03)
    pnl[exactly_flat] = fee[exactly_flat]  # net exactly 0: a loss by definition
    slippage = np.where(rng.random(n) < 0.9, rng.normal(1.0, 3.0, size=n), np.nan)
    symbol = rng.integers(0, len(symbols), size=n)
    fills = FillArrays(
        at=at,
        source=source,
        symbol=symbol,
        pnl=pnl,
        fee=fee,
        closing=closing,
        notional=notional,
        slippage_bps=slippage,
        sources=sources,
        symbols=symbols,
    )
    frame = pd.DataFrame(
        {
            "at": at,
            "source": np.array(sources, dtype=object)[source],
            "symbol": np.array(symbols, dtype=object)[symbol],
            "pnl": pnl,
            "fee": fee,
            "closing": closing,
            "notional": notional,
            "slippage_bps": slippage,
        }
    )
    return Scenario(fills, frame)


def fills_subset(fills: FillArrays, rows: np.ndarray, *, shuffle_names: int | None) -> FillArrays:
    """The fills at ``rows``, optionally re-coded against permuted, trimmed name tuples."""
    sources, symbols = fills.sources, fills.symbols
    source = fills.source[rows]
    symbol = fills.symbol[rows]
    if shuffle_names is not None:
        rng = np.random.default_rng(shuffle_names)
        used_sources = sorted({sources[code] for code in source})
        used_symbols = sorted({symbols[code] for code in symbol})
        new_sources = tuple(rng.permutation(np.array(used_sources, dtype=object)).tolist())
        new_symbols = tuple(rng.permutation(np.array(used_symbols, dtype=object)).tolist())
        source = np.array([new_sources.index(sources[code]) for code in source], dtype=np.int64)
        symbol = np.array([new_symbols.index(symbols[code]) for code in symbol], dtype=np.int64)
        sources, symbols = new_sources, new_symbols
    return FillArrays(
        at=fills.at[rows],
        source=source,
        symbol=symbol,
        pnl=fills.pnl[rows],
        fee=fills.fee[rows],
        closing=fills.closing[rows],
        notional=fills.notional[rows],
        slippage_bps=fills.slippage_bps[rows],
        sources=sources,
        symbols=symbols,
    )


def groups_of(frame: pd.DataFrame, by: str) -> dict[str, pd.DataFrame]:
    """The rows of each source, of each symbol, or all of them as "overall"."""
    if by == "overall":
        return {"overall": frame}
    return {str(name): part for name, part in frame.groupby(by)}


def reference_returns(
    frame: pd.DataFrame, *, by: str, window: Window, capital: float
) -> dict[str, pd.Series]:
    """Per group: the net PnL resampled per period on the window's grid (empty periods 0),
    the equity from ``capital`` and the simple returns on the previous period's equity."""
    period = pd.Timedelta(seconds=window.period_seconds)
    first = window.start - window.start % window.period_seconds
    grid = pd.date_range(
        pd.to_datetime(first, unit="s"),
        pd.to_datetime(window.end, unit="s"),
        freq=period,
        inclusive="left",
    )
    data = frame.assign(net=frame["pnl"] - frame["fee"])
    data.index = pd.to_datetime(data["at"], unit="s")
    out: dict[str, pd.Series] = {}
    for name, part in groups_of(data, by).items():
        per_period = part["net"].resample(period, origin="epoch").sum()
        if not per_period.index.isin(grid).any():
            continue  # no fill of this group in the window
        pnl = per_period.reindex(grid, fill_value=0.0)
        equity = capital + pnl.cumsum()
        returns = pnl / equity.shift(1, fill_value=capital)
        out[str(name)] = returns
    return out


def rows(metrics: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The metrics frame as plain floats by group name, then by column."""
    return {
        str(name): {str(column): float(value) for column, value in row.items()}
        for name, row in metrics.to_dict(orient="index").items()
    }


def annualization(period_seconds: int) -> int:
    return 365 * DAY // period_seconds


# --- 1. Sharpe, Sortino, drawdown against empyrical and quantstats -------------------------


@pytest.mark.parametrize(("seed", "period_seconds"), [(1, DAY), (2, DAY), (3, HOUR), (4, DAY)])
@pytest.mark.parametrize("by", BYS)
def test_risk_ratios_equal_empyricals_on_returns_rebuilt_from_the_fills(
    seed: int, period_seconds: int, by: GROUP_BY
) -> None:
    # given
    data = scenario(seed, days=6 if period_seconds == HOUR else 40)
    cells = cells_from_fills(data.fills, period_seconds=period_seconds)
    span = (6 if period_seconds == HOUR else 40) * DAY
    window = Window(start=T0, end=T0 + span, period_seconds=period_seconds)

    # when
    metrics = group_metrics(cells, by=by, window=window, capital=CAPITAL)

    # then
    reference = reference_returns(data.frame, by=by, window=window, capital=CAPITAL)
    assert sorted(metrics.index) == sorted(reference)
    year = annualization(period_seconds)
    for name, returns in reference.items():
        row = rows(metrics)[name]
        assert row["sharpe"] == pytest.approx(
            empyrical.sharpe_ratio(returns, annualization=year), rel=1e-9
        )
        assert row["sortino"] == pytest.approx(
            empyrical.sortino_ratio(returns, annualization=year), rel=1e-9
        )
        assert row["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)
        equity = CAPITAL * (1 + returns).cumprod()
        peak = np.maximum(equity.cummax(), CAPITAL)
        assert row["max_drawdown_usdt"] == pytest.approx((equity - peak).min(), rel=1e-6)
        # quantstats agrees where its definitions are empyrical's: Sharpe (rf = 0, ddof 1),
        # Sortino (downside deviation over all periods) and drawdown on compounded returns
        # from a baseline of 1. Its win_rate and profit_factor count *periods*, not trades,
        # so they are not compared.
        assert row["sharpe"] == pytest.approx(quantstats.stats.sharpe(returns, periods=year))
        assert row["sortino"] == pytest.approx(quantstats.stats.sortino(returns, periods=year))
        assert row["max_drawdown"] == pytest.approx(quantstats.stats.max_drawdown(returns))


def test_the_groups_really_differ_so_a_mixed_up_group_would_be_caught() -> None:
    data = scenario(1)
    cells = cells_from_fills(data.fills, period_seconds=DAY)
    metrics = group_metrics(
        cells, by="source", window=Window(T0, T0 + 40 * DAY, DAY), capital=CAPITAL
    )
    assert metrics["sharpe"].nunique() == len(SOURCES)
    assert rows(metrics)["funding_carry"]["sharpe"] > rows(metrics)["momentum"]["sharpe"]


# --- 2. trade statistics against a pandas groupby -------------------------------------------


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("by", BYS)
def test_trade_statistics_equal_a_pandas_groupby(seed: int, by: GROUP_BY) -> None:
    data = scenario(seed)
    cells = cells_from_fills(data.fills, period_seconds=DAY)
    window = Window(T0, T0 + 40 * DAY, DAY)

    metrics = group_metrics(cells, by=by, window=window, capital=CAPITAL)

    for name, part in groups_of(data.frame, by).items():
        net = part["pnl"] - part["fee"]
        closed = net[part["closing"]]
        won, lost = closed[closed > 0], closed[closed <= 0]
        decided = part["slippage_bps"].notna()
        expected = {
            "realized_pnl": net.sum(),
            "fees": part["fee"].sum(),
            "fills": len(part),
            "trades": len(closed),
            "hit_rate": len(won) / len(closed),
            "avg_win": won.mean(),
            "avg_loss": lost.mean(),
            "profit_factor": won.sum() / -lost.sum(),
            "expectancy": closed.mean(),
            "notional": part["notional"].sum(),
            "slippage_bps": (part["slippage_bps"] * part["notional"])[decided].sum()
            / part["notional"][decided].sum(),
        }
        row = rows(metrics)[str(name)]
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, rel=1e-9), (name, column)
    assert len(cells) <= data.fills.at.size
    frame = data.frame
    assert (frame["closing"] & (frame["pnl"] == frame["fee"])).any()  # zero nets are in


def test_order_statistics_equal_a_pandas_groupby() -> None:
    rng = np.random.default_rng(8)
    n = 2_000
    rejected = rng.random(n) < 0.1
    latency = np.where(~rejected & (rng.random(n) < 0.95), rng.gamma(2.0, 40.0, size=n), np.nan)
    orders = OrderArrays(
        at=rng.integers(T0, T0 + 10 * DAY, size=n),
        source=rng.integers(0, len(SOURCES), size=n),
        symbol=rng.integers(0, len(SYMBOLS), size=n),
        rejected=rejected,
        latency_ms=latency,
        sources=SOURCES,
        symbols=SYMBOLS,
    )
    frame = pd.DataFrame(
        {
            "symbol": np.array(SYMBOLS, dtype=object)[orders.symbol],
            "rejected": rejected,
            "latency": latency,
        }
    )

    cells = cells_from_orders(orders, period_seconds=DAY)
    metrics = group_metrics(cells, by="symbol", window=Window(T0, T0 + 10 * DAY, DAY), capital=1.0)

    expected = frame.groupby("symbol").agg(
        orders=("rejected", "size"), reject_rate=("rejected", "mean"), latency=("latency", "mean")
    )
    got = rows(metrics)
    for name, row in rows(expected).items():
        assert got[name]["orders"] == row["orders"]
        assert got[name]["reject_rate"] == pytest.approx(row["reject_rate"], rel=1e-12)
        assert got[name]["latency_ms"] == pytest.approx(row["latency"], rel=1e-9)
        assert got[name]["fills"] == 0
        assert math.isnan(got[name]["hit_rate"])


# --- 3. incremental = full recompute ---------------------------------------------------------


def assert_same_metrics(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert sorted(left.index) == sorted(right.index)
    right = right.loc[left.index]
    assert list(left.columns) == list(right.columns) == list(METRIC_COLUMNS)
    np.testing.assert_allclose(
        left.to_numpy(dtype=float), right.to_numpy(dtype=float), rtol=1e-9, atol=1e-9
    )


def cells_frame(cells: Cells) -> pd.DataFrame:
    """Cells keyed by names, so cells with different codes compare."""
    index = pd.MultiIndex.from_arrays(
        [
            cells.period,
            np.array(cells.sources, dtype=object)[cells.source],
            np.array(cells.symbols, dtype=object)[cells.symbol],
        ],
        names=["period", "source", "symbol"],
    )
    return pd.DataFrame(cells.values, index=index, columns=list(CELL_FIELDS)).sort_index()


@pytest.mark.parametrize("cut", [0.02, 0.5, 0.999])
def test_merged_cells_of_parts_with_their_own_names_give_the_full_recompute(cut: float) -> None:
    # given fills cut into three parts, each coded against its own name tuples
    data = scenario(9)
    order = np.argsort(data.fills.at, kind="stable")
    a, b = int(cut * order.size), int((1 + cut) / 2 * order.size)
    parts = [
        fills_subset(data.fills, order[:a], shuffle_names=1),
        fills_subset(data.fills, order[a:b], shuffle_names=2),
        fills_subset(data.fills, order[b:], shuffle_names=None),
    ]
    assert parts[0].sources != parts[1].sources

    # when
    merged = cells_merged(*(cells_from_fills(part, period_seconds=DAY) for part in parts))
    full = cells_from_fills(data.fills, period_seconds=DAY)

    # then
    pd.testing.assert_frame_equal(cells_frame(merged), cells_frame(full), rtol=1e-12)
    window = Window(T0, T0 + 40 * DAY, DAY)
    for by in BYS:
        assert_same_metrics(
            group_metrics(merged, by=by, window=window, capital=CAPITAL),
            group_metrics(full, by=by, window=window, capital=CAPITAL),
        )


def test_one_fill_at_a_time_merged_into_the_cells_gives_the_full_recompute() -> None:
    data = scenario(10, n=400, days=5)
    cells = cells_from_fills(
        fills_subset(data.fills, np.arange(300), shuffle_names=None), period_seconds=DAY
    )
    for row in range(300, 400):  # existing keys (fast path) and new ones alike
        one = fills_subset(data.fills, np.array([row]), shuffle_names=row)
        cells = cells_merged(cells, cells_from_fills(one, period_seconds=DAY))
    full = cells_from_fills(data.fills, period_seconds=DAY)
    pd.testing.assert_frame_equal(cells_frame(cells), cells_frame(full), rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 37, 1_000, 1 << 16])
@pytest.mark.parametrize("period_seconds", [HOUR, DAY])
def test_time_ordered_fills_summed_by_chunks_give_the_cells_of_any_order(
    chunk: int, period_seconds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fills as recorded (time order) are summed a chunk of rows at a time; chunk boundaries
    # fall inside periods, and ties and empty periods are in. Shuffled, they are one chunk.
    data = scenario(11, n=2_500, days=9)
    at = data.fills.at.copy()
    at[100:160] = at[100]  # ties
    order = np.argsort(at, kind="stable")
    ordered = fills_subset(dataclasses.replace(data.fills, at=at), order, shuffle_names=None)
    assert bool(np.all(np.diff(ordered.at) >= 0))
    shuffled = fills_subset(
        ordered, np.random.default_rng(3).permutation(len(ordered)), shuffle_names=None
    )
    whole = cells_from_fills(shuffled, period_seconds=period_seconds)
    monkeypatch.setattr(analytics, "_CHUNK_ROWS", chunk)
    chunked = cells_from_fills(ordered, period_seconds=period_seconds)

    pd.testing.assert_frame_equal(cells_frame(chunked), cells_frame(whole), rtol=1e-12)
    frame = cells_frame(chunked)
    assert frame["fills"].sum() == len(ordered)
    net = ordered.pnl - ordered.fee
    assert frame["win_pnl"].sum() == pytest.approx(net[ordered.closing & (net > 0)].sum())
    assert frame["loss_pnl"].sum() == pytest.approx(net[ordered.closing & (net <= 0)].sum())
    assert frame["trades"].sum() == ordered.closing.sum()
    decided = ~np.isnan(ordered.slippage_bps)
    assert frame["slip_notional"].sum() == pytest.approx(ordered.notional[decided].sum())


def test_time_ordered_fills_years_apart_in_one_chunk_stay_exact() -> None:
    # Two fills far apart in time: the sparse key space, in time order or not.
    fills = scenario(12, n=2, days=1).fills
    at = np.array([T0, T0 + 3_000 * DAY])
    for times in (at, at[::-1]):
        cells = cells_from_fills(dataclasses.replace(fills, at=times), period_seconds=HOUR)
        assert sorted(cells.period.tolist()) == [T0, T0 + 3_000 * DAY]
        assert cells.values[:, CELL_FIELDS.index("fills")].tolist() == [1.0, 1.0]


def test_cells_years_apart_merge_like_their_recompute() -> None:
    # given fills in 2025 and in 1995: a key space far too sparse to lay out densely
    recent = scenario(19, n=300, days=2)
    old = scenario(20, n=300, days=2, start=T0 - 30 * 365 * DAY)
    rows = np.arange(600)
    both = FillArrays(
        at=np.concatenate([recent.fills.at, old.fills.at]),
        source=np.concatenate([recent.fills.source, old.fills.source]),
        symbol=np.concatenate([recent.fills.symbol, old.fills.symbol]),
        pnl=np.concatenate([recent.fills.pnl, old.fills.pnl]),
        fee=np.concatenate([recent.fills.fee, old.fills.fee]),
        closing=np.concatenate([recent.fills.closing, old.fills.closing]),
        notional=np.concatenate([recent.fills.notional, old.fills.notional]),
        slippage_bps=np.concatenate([recent.fills.slippage_bps, old.fills.slippage_bps]),
        sources=SOURCES,
        symbols=SYMBOLS,
    )

    merged = cells_merged(
        cells_from_fills(fills_subset(both, rows[:300], shuffle_names=3), period_seconds=HOUR),
        cells_from_fills(fills_subset(both, rows[300:], shuffle_names=4), period_seconds=HOUR),
    )

    full = cells_from_fills(both, period_seconds=HOUR)
    pd.testing.assert_frame_equal(cells_frame(merged), cells_frame(full), rtol=1e-12)
    assert full.period.min() < T0 - 29 * 365 * DAY


def test_fill_cells_and_order_cells_merge_into_one_row_per_key() -> None:
    data = scenario(11, n=200, days=3)
    orders = OrderArrays(
        at=data.fills.at,
        source=data.fills.source,
        symbol=data.fills.symbol,
        rejected=np.zeros(200, dtype=bool),
        latency_ms=np.full(200, 12.5),
        sources=SOURCES,
        symbols=SYMBOLS,
    )
    fill_cells = cells_from_fills(data.fills, period_seconds=DAY)
    merged = cells_merged(fill_cells, cells_from_orders(orders, period_seconds=DAY))

    assert len(merged) == len(fill_cells)  # same keys
    frame = cells_frame(merged)
    assert (frame["orders"] == frame["fills"]).all()
    assert frame["latency_ms_sum"].sum() == pytest.approx(200 * 12.5)


def test_the_groups_argument_picks_rows_of_the_full_result() -> None:
    data = scenario(12)
    cells = cells_from_fills(data.fills, period_seconds=DAY)
    window = Window(T0, T0 + 40 * DAY, DAY)
    full = group_metrics(cells, by="source", window=window, capital=CAPITAL)
    picked = group_metrics(
        cells, by="source", window=window, capital=CAPITAL, groups=["breakout", "unknown"]
    )
    assert list(picked.index) == ["breakout"]
    assert_same_metrics(picked, full.loc[["breakout"]])
    with pytest.raises(ValueError, match="overall"):
        group_metrics(cells, by="overall", window=window, capital=CAPITAL, groups=["x"])


# --- 4. windows, empties, NaN cases, alignment, validation, curves ---------------------------


def test_a_window_keeps_only_the_periods_it_covers_and_floors_its_start() -> None:
    data = scenario(13)
    cells = cells_from_fills(data.fills, period_seconds=DAY)
    # Starts mid-day 10 (floored to day 10) and ends mid-day 20 (day 20 included).
    window = Window(T0 + 10 * DAY + 5_000, T0 + 20 * DAY + 5_000, DAY)

    metrics = group_metrics(cells, by="symbol", window=window, capital=CAPITAL)

    day = (data.frame["at"] - T0) // DAY
    inside = data.frame[(day >= 10) & (day <= 20)]
    expected = (inside["pnl"] - inside["fee"]).groupby(inside["symbol"]).sum()
    for name, value in expected.items():
        assert rows(metrics)[str(name)]["realized_pnl"] == pytest.approx(value, rel=1e-9)
    assert metrics["fills"].sum() == len(inside)
    reference = reference_returns(data.frame, by="symbol", window=window, capital=CAPITAL)
    assert len(next(iter(reference.values()))) == 11
    for name, returns in reference.items():
        assert rows(metrics)[name]["sharpe"] == pytest.approx(
            empyrical.sharpe_ratio(returns, annualization=365), rel=1e-9
        )


def test_daily_cells_give_weekly_returns_like_weekly_cells() -> None:
    data = scenario(14, days=70)
    week = 7 * DAY
    window = Window(T0, T0 + 70 * DAY, week)
    from_days = group_metrics(
        cells_from_fills(data.fills, period_seconds=DAY), by="source", window=window, capital=1e4
    )
    from_weeks = group_metrics(
        cells_from_fills(data.fills, period_seconds=week), by="source", window=window, capital=1e4
    )
    assert_same_metrics(from_days, from_weeks)
    with pytest.raises(ValueError, match="multiple"):
        group_metrics(
            cells_from_fills(data.fills, period_seconds=week),
            by="source",
            window=Window(T0, T0 + 70 * DAY, DAY),
            capital=1e4,
        )


def test_a_window_without_cells_has_only_the_overall_row_with_zeros() -> None:
    cells = cells_from_fills(scenario(15).fills, period_seconds=DAY)
    window = Window(T0 + 100 * DAY, T0 + 110 * DAY, DAY)

    assert group_metrics(cells, by="source", window=window, capital=CAPITAL).empty
    overall = group_metrics(cells, by="overall", window=window, capital=CAPITAL)

    row = rows(overall)["overall"]
    assert list(overall.index) == ["overall"]
    assert row["realized_pnl"] == 0
    assert row["fills"] == 0
    assert row["orders"] == 0
    assert row["max_drawdown"] == 0
    assert row["max_drawdown_usdt"] == 0
    for column in ("hit_rate", "avg_win", "avg_loss", "profit_factor", "expectancy"):
        assert math.isnan(row[column])
    # Ten zero returns: empyrical's 0 / 0 is NaN for both ratios.
    assert math.isnan(row["sharpe"])
    assert math.isnan(row["sortino"])
    assert math.isnan(empyrical.sharpe_ratio(np.zeros(10), annualization=365))


def test_empty_inputs_make_empty_cells_and_an_empty_grid_makes_nan_drawdowns() -> None:
    none = np.zeros(0)
    fills = FillArrays(
        at=none.astype(np.int64),
        source=none.astype(np.int64),
        symbol=none.astype(np.int64),
        pnl=none,
        fee=none,
        closing=none.astype(bool),
        notional=none,
        slippage_bps=none,
        sources=SOURCES,
        symbols=SYMBOLS,
    )
    cells = cells_from_fills(fills, period_seconds=DAY)
    assert len(cells) == 0
    assert cells.sources == SOURCES
    assert cells.values.shape == (0, 14)
    assert len(Cells.empty(DAY)) == 0
    assert len(cells_merged(cells, Cells.empty(DAY))) == 0

    metrics = group_metrics(cells, by="symbol", window=Window(T0, T0 + DAY, DAY), capital=1.0)
    assert metrics.empty
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    overall = group_metrics(cells, by="overall", window=Window(T0, T0, DAY), capital=1.0)
    assert math.isnan(rows(overall)["overall"]["max_drawdown"])
    assert group_curves(cells, by="overall", window=Window(T0, T0, DAY)) == {
        "overall": {"t": [], "cum_pnl": [], "hit_rate": []}
    }


def one_source_cells(daily_net: list[float], *, closing: bool = True) -> Cells:
    """One fill a day for one source and symbol, with the given net PnL (fee 1)."""
    days = len(daily_net)
    return cells_from_fills(
        FillArrays(
            at=T0 + DAY * np.arange(days) + 600,
            source=np.zeros(days, dtype=np.int64),
            symbol=np.zeros(days, dtype=np.int64),
            pnl=np.array(daily_net) + 1.0,
            fee=np.ones(days),
            closing=np.full(days, closing),
            notional=np.full(days, 100.0),
            slippage_bps=np.full(days, np.nan),
            sources=("s",),
            symbols=("X",),
        ),
        period_seconds=DAY,
    )


def metrics_row(cells: Cells, days: int, capital: float = 100.0) -> dict[str, float]:
    window = Window(T0, T0 + days * DAY, DAY)
    return rows(group_metrics(cells, by="source", window=window, capital=capital))["s"]


def test_one_period_has_a_drawdown_but_no_ratios() -> None:
    row = metrics_row(one_source_cells([-10.0]), 1)
    assert row["max_drawdown"] == pytest.approx(-0.1)
    assert row["max_drawdown_usdt"] == pytest.approx(-10.0)
    assert math.isnan(row["sharpe"])
    assert math.isnan(row["sortino"])
    assert math.isnan(empyrical.sharpe_ratio(np.array([-0.1]), annualization=365))


def test_no_losing_period_gives_nan_sortino_where_empyrical_says_infinity() -> None:
    row = metrics_row(one_source_cells([5.0, 0.0, 3.0]), 3)
    returns = np.array([5 / 100, 0.0, 3 / 105])
    assert row["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365))
    assert math.isinf(empyrical.sortino_ratio(returns, annualization=365))
    assert math.isnan(row["sortino"])
    assert row["max_drawdown"] == 0.0


def test_no_losses_leave_the_loss_ratios_undefined() -> None:
    row = metrics_row(one_source_cells([5.0, 2.0]), 2)
    assert row["hit_rate"] == 1.0
    assert row["avg_win"] == pytest.approx(3.5)
    assert math.isnan(row["avg_loss"])
    assert math.isnan(row["profit_factor"])
    opening_only = metrics_row(one_source_cells([0.0, 0.0], closing=False), 2)
    assert opening_only["trades"] == 0
    assert math.isnan(opening_only["hit_rate"])
    assert math.isnan(opening_only["expectancy"])


def test_a_zero_net_trade_is_a_loss() -> None:
    row = metrics_row(one_source_cells([4.0, 0.0]), 2)
    assert row["hit_rate"] == 0.5
    assert row["avg_loss"] == 0.0
    assert math.isnan(row["profit_factor"])  # no money lost: undefined, not infinite


def test_a_ruined_group_keeps_its_drawdown_but_loses_its_ratios() -> None:
    row = metrics_row(one_source_cells([-60.0, -60.0, 30.0]), 3)
    assert row["max_drawdown"] == pytest.approx(-1.2)  # equity 100 -> 40 -> -20 -> 10
    assert row["max_drawdown_usdt"] == pytest.approx(-120.0)
    assert math.isnan(row["sharpe"])
    assert math.isnan(row["sortino"])


def test_fills_go_to_the_period_their_time_falls_in() -> None:
    times = [T0 - 1, T0, T0 + HOUR - 1, T0 + HOUR, -1, 0]
    fills = FillArrays(
        at=np.array(times),
        source=np.zeros(6, dtype=np.int64),
        symbol=np.zeros(6, dtype=np.int64),
        pnl=np.zeros(6),
        fee=np.arange(1.0, 7.0),
        closing=np.zeros(6, dtype=bool),
        notional=np.ones(6),
        slippage_bps=np.zeros(6),
        sources=("s",),
        symbols=("X",),
    )
    cells = cells_from_fills(fills, period_seconds=HOUR)
    fees = dict(zip(cells.period.tolist(), cells.values[:, 1].tolist(), strict=True))
    assert fees == {-HOUR: 5.0, 0: 6.0, T0 - HOUR: 1.0, T0: 2.0 + 3.0, T0 + HOUR: 4.0}
    assert (cells.period % HOUR == 0).all()


def test_inconsistent_inputs_are_refused() -> None:
    day_cells = cells_from_fills(scenario(16, n=50).fills, period_seconds=DAY)
    hour_cells = cells_from_fills(scenario(16, n=50).fills, period_seconds=HOUR)
    with pytest.raises(ValueError, match="period_seconds"):
        cells_merged(day_cells, hour_cells)
    with pytest.raises(ValueError, match="at least one"):
        cells_merged()
    with pytest.raises(ValueError, match="multiples"):
        Cells(
            source=np.zeros(1, dtype=np.int64),
            symbol=np.zeros(1, dtype=np.int64),
            period=np.array([T0 + 1]),
            values=np.zeros((1, 14)),
            sources=("s",),
            symbols=("X",),
            period_seconds=DAY,
        )
    with pytest.raises(ValueError, match="codes"):
        OrderArrays(
            at=np.zeros(1, dtype=np.int64),
            source=np.array([1]),
            symbol=np.zeros(1, dtype=np.int64),
            rejected=np.zeros(1, dtype=bool),
            latency_ms=np.zeros(1),
            sources=("s",),
            symbols=("X",),
        )
    with pytest.raises(ValueError, match="capital"):
        group_metrics(day_cells, by="source", window=Window(T0, T0 + DAY, DAY), capital=0.0)
    with pytest.raises(ValueError, match="before"):
        Window(T0, T0 - 1, DAY)


def test_curves_end_on_the_metrics_and_downsampling_keeps_the_last_point() -> None:
    data = scenario(17, days=40)
    cells = cells_from_fills(data.fills, period_seconds=HOUR)
    window = Window(T0, T0 + 40 * DAY, HOUR)  # 960 periods
    metrics = group_metrics(cells, by="source", window=window, capital=CAPITAL)

    full = group_curves(cells, by="source", window=window, max_points=10_000)
    small = group_curves(cells, by="source", window=window, max_points=37)

    assert sorted(full) == sorted(metrics.index)
    reference = reference_returns(data.frame, by="source", window=window, capital=CAPITAL)
    for name, curve in full.items():
        assert len(curve["t"]) == 960
        assert curve["t"][0] == T0
        assert curve["t"][-1] == T0 + 40 * DAY - HOUR
        equity = CAPITAL * (1 + reference[name]).cumprod()
        np.testing.assert_allclose(curve["cum_pnl"], (equity - CAPITAL).to_numpy(), atol=1e-6)
        short = small[name]
        assert len(short["t"]) == len(short["cum_pnl"]) == len(short["hit_rate"]) == 37
        assert short["t"][-1] == curve["t"][-1]
        assert short["cum_pnl"][-1] == curve["cum_pnl"][-1]
        assert short["cum_pnl"][-1] == pytest.approx(rows(metrics)[name]["realized_pnl"])
        assert short["hit_rate"][-1] == pytest.approx(rows(metrics)[name]["hit_rate"])
        assert set(short["t"]) <= set(curve["t"])


def test_the_hit_rate_curve_is_nan_until_the_first_trade() -> None:
    # given an opening fill on day 0, then a win on day 1 and a zero-net loss on day 2
    opening = one_source_cells([0.0], closing=False)
    closing = cells_from_fills(
        FillArrays(
            at=np.array([T0 + DAY + 1, T0 + 2 * DAY + 1]),
            source=np.zeros(2, dtype=np.int64),
            symbol=np.zeros(2, dtype=np.int64),
            pnl=np.array([4.0, 1.0]),
            fee=np.ones(2),
            closing=np.ones(2, dtype=bool),
            notional=np.ones(2),
            slippage_bps=np.zeros(2),
            sources=("s",),
            symbols=("X",),
        ),
        period_seconds=DAY,
    )

    curve = group_curves(
        cells_merged(opening, closing), by="symbol", window=Window(T0, T0 + 3 * DAY, DAY)
    )["X"]

    assert math.isnan(curve["hit_rate"][0])
    assert curve["hit_rate"][1:] == [1.0, 0.5]
    assert curve["cum_pnl"] == [0.0, 3.0, 3.0]  # day 0 nets 0 (pnl 1, fee 1)
    assert curve["t"] == [T0, T0 + DAY, T0 + 2 * DAY]


# --- NAV curve -------------------------------------------------------------------------------


def test_a_deposit_is_neither_a_gain_nor_a_recovery() -> None:
    at = T0 + HOUR * np.arange(6)
    nav = np.array([1_000.0, 1_100.0, 990.0, 2_000.0, 2_050.0, 2_300.0])
    flow = np.array([0.0, 0.0, 0.0, 1_000.0, 0.0, 0.0])  # deposit just before point 3

    curve = nav_curve(at, nav, flow)

    # by hand: index 1, 1.1, 0.99, 0.99 x 1000/990 = 1.0, 1.0 x 2050/2000, x 2300/2050
    index = [1.0, 1.1, 0.99, 1.0, 1.025, 1.025 * 2_300 / 2_050]
    peak = [1.0, 1.1, 1.1, 1.1, 1.1, 1.1 if index[5] < 1.1 else index[5]]
    expected = [i / p - 1 for i, p in zip(index, peak, strict=True)]
    np.testing.assert_allclose(curve["drawdown"], expected, rtol=1e-12)
    assert curve["drawdown"][3] == pytest.approx(1.0 / 1.1 - 1)  # still under water
    assert curve["max_drawdown"] == pytest.approx(0.99 / 1.1 - 1)
    assert curve["nav"] == nav.tolist()
    assert curve["t"] == at.tolist()


def test_nav_downsampling_keeps_the_last_point_and_the_worst_drawdown() -> None:
    rng = np.random.default_rng(18)
    points = 1_001
    nav = 10_000 * np.cumprod(1 + rng.normal(0.0002, 0.01, size=points))
    flow = np.zeros(points)
    at = T0 + 60 * np.arange(points)
    full = nav_curve(at, nav, flow, max_points=10_000)

    small = nav_curve(at, nav, flow, max_points=50)

    assert len(small["t"]) == len(small["nav"]) == len(small["drawdown"]) == 50
    assert small["t"][-1] == full["t"][-1]
    assert small["nav"][-1] == full["nav"][-1]
    assert min(small["drawdown"]) == min(full["drawdown"]) == small["max_drawdown"]
    assert small["max_drawdown"] == pytest.approx(empyrical.max_drawdown(nav[1:] / nav[:-1] - 1))
    # each kept drawdown is the worst of its bucket, so never above the point it stands for
    kept = [full["t"].index(t) for t in small["t"]]
    assert all(d <= full["drawdown"][i] for d, i in zip(small["drawdown"], kept, strict=True))
    assert nav_curve([], [], [])["t"] == []
    with pytest.raises(ValueError, match="nav"):
        nav_curve([1, 2], [1.0, 0.0], [0.0, 0.0])


# --- 5. merge algebra (hypothesis) -----------------------------------------------------------

NAMES = st.lists(st.sampled_from(("a", "b", "c", "d")), min_size=1, max_size=4, unique=True)


@st.composite
def small_cells(draw: st.DrawFn) -> Cells:
    sources = tuple(draw(NAMES))
    symbols = tuple(draw(NAMES))
    n = draw(st.integers(0, 12))
    ints = st.integers(-40, 40)
    fills = FillArrays(
        # quarters: every sum is exact in float64, so any order of adding gives the same bits
        at=np.array(
            draw(st.lists(st.integers(0, 5 * HOUR), min_size=n, max_size=n)), dtype=np.int64
        ),
        source=np.array(
            draw(st.lists(st.integers(0, len(sources) - 1), min_size=n, max_size=n)), dtype=np.int64
        ),
        symbol=np.array(
            draw(st.lists(st.integers(0, len(symbols) - 1), min_size=n, max_size=n)), dtype=np.int64
        ),
        pnl=np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=float) / 4,
        fee=np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)), dtype=float) / 4,
        closing=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool),
        notional=np.array(draw(st.lists(st.integers(1, 100), min_size=n, max_size=n)), dtype=float),
        slippage_bps=np.full(n, 0.5),
        sources=sources,
        symbols=symbols,
    )
    return cells_from_fills(fills, period_seconds=HOUR)


@settings(max_examples=60, deadline=None)
@given(small_cells(), small_cells(), small_cells())
def test_merging_is_commutative_and_associative(a: Cells, b: Cells, c: Cells) -> None:
    one = cells_frame(cells_merged(cells_merged(a, b), c))
    pd.testing.assert_frame_equal(cells_frame(cells_merged(a, cells_merged(b, c))), one)
    pd.testing.assert_frame_equal(cells_frame(cells_merged(c, b, a)), one)
    pd.testing.assert_frame_equal(cells_frame(cells_merged(b, a, c)), one)
    assert cells_frame(cells_merged(a)).equals(cells_frame(a))
