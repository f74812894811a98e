"""Router-health analytics: additive cells per (signal source, symbol, period), and the metrics,
curves and NAV drawdown built from them. Pure numpy/pandas, no Django.

Cells. Every metric here is a ratio or a path of *sums*, so the unit of storage is a cell: the
sums of ``CELL_FIELDS`` over the fills and orders of one (source, symbol, period start). Cells
of disjoint sets of fills add up to the cells of their union (``cells_merged``), so an
incremental update is the cells of the new fills merged into the stored ones; history is never
recomputed. The books themselves are ``Decimal`` elsewhere; these are display analytics in
float64, converted at the boundary.

Definitions (per group, over the cells in the window):

- realised PnL is *net*: ``pnl - fees``. A fill's ``pnl`` is the realised PnL gross of fee
  that the virtual-position accounting attributed to its source (0 for a fill that only opens).
- a *trade* is a closing fill (it reduced or closed the source's virtual position); it *wins*
  when its ``pnl - fee > 0`` and loses otherwise (a zero counts as a loss).
- ``hit_rate = wins / trades``, ``avg_win = win_pnl / wins``, ``avg_loss = loss_pnl / losses``
  (negative), ``profit_factor = win_pnl / |loss_pnl|``, ``expectancy = (win_pnl + loss_pnl) /
  trades``; each NaN when its denominator is 0 (no trades, no wins, no losses, no money lost).
- ``slippage_bps`` is notional-weighted over the fills that have a decision price; positive
  means the fill was worse than the price the signal decided at.
- returns: the window's period grid runs from ``floor(start)`` to ``end`` (exclusive) and a
  period without cells has zero PnL. With ``p_t`` the group's net PnL of period ``t`` and the
  same ``capital`` for every group, ``E_t = capital + p_0 + ... + p_t`` and
  ``r_t = p_t / E_{t-1}`` (``E_{-1} = capital``). ``sharpe = mean(r) / std(r, ddof=1) x
  sqrt(A)`` and ``sortino = mean(r) / sqrt(mean(min(r, 0)^2)) x sqrt(A)``, with
  ``A = 365 x 86400 / period_seconds`` periods a year (crypto trades every day);
  ``max_drawdown = min_t E_t / max(capital, max_{s<=t} E_s) - 1`` (a fraction, <= 0) and
  ``max_drawdown_usdt`` the same in USDT. These are empyrical's ``sharpe_ratio``,
  ``sortino_ratio`` (required return 0) and ``max_drawdown`` of ``r``.

Entry points: ``cells_from_fills``, ``cells_from_orders``, ``cells_merged``; then
``group_metrics`` (a DataFrame with ``METRIC_COLUMNS``), ``group_curves`` and ``nav_curve``
for the charts.

NaN cases. Sharpe and Sortino need at least two periods (empyrical: NaN). Where empyrical
divides by zero (every return equal, so zero deviation; no return below zero, so zero downside
deviation) it gives +-inf or NaN; here both are NaN, as "undefined" rather than "infinitely
good". ``max_drawdown`` is NaN only for an empty grid. If a group's equity reaches zero or
below, its returns stop meaning anything (a loss on negative equity would read as a gain):
its Sharpe and Sortino are NaN, its drawdowns are still measured on the equity.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CELL_FIELDS: tuple[str, ...] = (
    "pnl",  # sum of realised PnL gross of fees, over all fills
    "fees",  # sum of fees (>= 0)
    "fills",  # number of fills
    "trades",  # number of closing fills (the fill reduced or closed the virtual position)
    "wins",  # closing fills whose (pnl - fee) > 0
    "win_pnl",  # sum of (pnl - fee) over winning closing fills (>= 0)
    "loss_pnl",  # sum of (pnl - fee) over losing closing fills (<= 0; a zero counts as a loss)
    "notional",  # sum of quantity * price
    "slip_weighted",  # sum of slippage_bps * notional over fills with a decision price
    "slip_notional",  # sum of notional over fills with a decision price
    "orders",  # orders sent (from OrderArrays)
    "rejects",  # orders rejected by the venue
    "latency_ms_sum",  # sum of submit->ack latency (ms) over acked orders
    "latency_count",  # acked orders with a latency
)
_F = {name: index for index, name in enumerate(CELL_FIELDS)}
_NFIELDS = len(CELL_FIELDS)

SECONDS_PER_YEAR = 365 * 86_400

# Dense key spaces (periods x sources x symbols x categories) up to this many slots are
# summed with np.bincount straight into a dense array; beyond it the keys are np.unique-d
# first (a sort, ~50x slower on a million fills, but memory proportional to the input).
_DENSE_MIN_SLOTS = 1 << 16
_DENSE_SLOTS_PER_ROW = 8
_DENSE_MAX_SLOTS = 1 << 25

# Rows per chunk of time-ordered fills summed at once (``_FillSums``): its temporaries stay in
# the CPU caches, and no million-row temporary is allocated (and page-faulted) at all.
_CHUNK_ROWS = 1 << 16

_MAX_INSERTED_KEYS = 64  # new keys a merge inserts into the big part's rows one by one
_LANES = 8  # partial sums per group (see _Laned), a power of 2
_LANED_MAX_SIZE = 1 << 16
_MAX_GRID = 1 << 26  # groups x periods of the dense PnL matrix (512 MiB of float64)

GROUP_BY = Literal["source", "symbol", "overall"]
OVERALL = "overall"

METRIC_COLUMNS: tuple[str, ...] = (
    "realized_pnl",
    "fees",
    "fills",
    "trades",
    "hit_rate",
    "avg_win",
    "avg_loss",
    "profit_factor",
    "expectancy",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_usdt",
    "notional",
    "slippage_bps",
    "orders",
    "reject_rate",
    "latency_ms",
)


# --- inputs --------------------------------------------------------------------------------


def _check_names(names: tuple[str, ...], what: str) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names must be unique, got {names!r}")


def _check_codes(codes: IntArray, names: tuple[str, ...], what: str) -> None:
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(names)):
        raise ValueError(f"{what} codes must index into the {len(names)} {what} names")


def _check_period_seconds(period_seconds: int) -> None:
    if period_seconds <= 0:
        raise ValueError(f"period_seconds must be > 0, got {period_seconds}")


def _coerce(instance: object, **arrays: type[np.generic]) -> int:
    """Replace each named attribute by a 1-D array of its dtype (no copy when it already is
    one); return the common length. Frozen dataclasses, hence ``object.__setattr__``."""
    length = -1
    for name, dtype in arrays.items():
        array = np.asarray(getattr(instance, name), dtype=dtype)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if length not in (-1, array.size):
            raise ValueError(f"{name} has {array.size} rows, expected {length}")
        length = array.size
        object.__setattr__(instance, name, array)
    return length


@dataclass(frozen=True, eq=False)
class FillArrays:
    """One row per attributed fill, in any order.

    ``at`` is epoch seconds; ``source``/``symbol`` are codes into ``sources``/``symbols``;
    ``pnl`` is the realised PnL gross of fee attributed to the source; ``closing`` says the
    fill reduced or closed the source's virtual position; ``notional`` is quantity x price;
    ``slippage_bps`` is signed (positive = paid worse than the decision price), NaN when the
    fill has no decision price. Amounts are finite (not checked: a NaN poisons its cell).
    """

    at: IntArray
    source: IntArray
    symbol: IntArray
    pnl: FloatArray
    fee: FloatArray
    closing: BoolArray
    notional: FloatArray
    slippage_bps: FloatArray
    sources: tuple[str, ...]
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        _coerce(
            self,
            at=np.int64,
            source=np.int64,
            symbol=np.int64,
            pnl=np.float64,
            fee=np.float64,
            closing=np.bool_,
            notional=np.float64,
            slippage_bps=np.float64,
        )
        _check_names(self.sources, "source")
        _check_names(self.symbols, "symbol")
        _check_codes(self.source, self.sources, "source")
        _check_codes(self.symbol, self.symbols, "symbol")

    def __len__(self) -> int:
        return int(self.at.size)


@dataclass(frozen=True, eq=False)
class OrderArrays:
    """One row per order sent: ``rejected`` by the venue, ``latency_ms`` from submit to the
    venue's acknowledgement (NaN when it was never acknowledged)."""

    at: IntArray
    source: IntArray
    symbol: IntArray
    rejected: BoolArray
    latency_ms: FloatArray
    sources: tuple[str, ...]
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        _coerce(
            self,
            at=np.int64,
            source=np.int64,
            symbol=np.int64,
            rejected=np.bool_,
            latency_ms=np.float64,
        )
        _check_names(self.sources, "source")
        _check_names(self.symbols, "symbol")
        _check_codes(self.source, self.sources, "source")
        _check_codes(self.symbol, self.symbols, "symbol")

    def __len__(self) -> int:
        return int(self.at.size)


@dataclass(frozen=True, eq=False)
class Cells:
    """Sums of ``CELL_FIELDS`` per (source, symbol, period start).

    ``period`` is the epoch second the period starts at, a multiple of ``period_seconds``.
    ``values[:, i]`` is the sum named ``CELL_FIELDS[i]``, stored column-major (a field is
    contiguous, as the metrics read it; any array given is converted). Rows are unique by
    key (assumed, not checked: cells loaded from a table keyed by it are). Rows made here are
    sorted by (period, source code, symbol code), which makes merging new fills into the
    newest periods cheap; nothing relies on it for correctness. Cells may share arrays with
    the cells they were merged from: treat the arrays as read-only.
    """

    source: IntArray
    symbol: IntArray
    period: IntArray
    values: FloatArray
    sources: tuple[str, ...]
    symbols: tuple[str, ...]
    period_seconds: int

    def __post_init__(self) -> None:
        _check_period_seconds(self.period_seconds)
        rows = _coerce(self, source=np.int64, symbol=np.int64, period=np.int64)
        values = np.asfortranarray(self.values, dtype=np.float64)  # see the class docstring
        if values.shape != (rows, _NFIELDS):
            raise ValueError(f"values must have shape ({rows}, {_NFIELDS}), got {values.shape}")
        object.__setattr__(self, "values", values)
        _check_names(self.sources, "source")
        _check_names(self.symbols, "symbol")
        _check_codes(self.source, self.sources, "source")
        _check_codes(self.symbol, self.symbols, "symbol")
        if np.any(self.period % self.period_seconds):
            raise ValueError(f"periods must be multiples of {self.period_seconds} seconds")

    @classmethod
    def empty(
        cls,
        period_seconds: int,
        *,
        sources: tuple[str, ...] = (),
        symbols: tuple[str, ...] = (),
    ) -> Cells:
        """No cells (the names are kept, so that codes merged into them stay stable)."""
        none = np.zeros(0, dtype=np.int64)
        return cls(
            source=none,
            symbol=none,
            period=none,
            values=_empty_values(0),
            sources=sources,
            symbols=symbols,
            period_seconds=period_seconds,
        )

    def __len__(self) -> int:
        return int(self.period.size)


# --- building cells ------------------------------------------------------------------------


def _dense_ok(slots: int, rows: int) -> bool:
    return slots <= min(_DENSE_MAX_SLOTS, max(_DENSE_MIN_SLOTS, _DENSE_SLOTS_PER_ROW * rows))


def _sum_by(index: IntArray, weights: FloatArray | None, size: int) -> FloatArray:
    # np.bincount's stub says intp whatever the weights; the sums are float64 either way.
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


def _empty_values(rows: int) -> FloatArray:
    # Column-major: one field is contiguous, which is how the metrics read them.
    return np.zeros((rows, _NFIELDS), order="F")


class _Layout(NamedTuple):
    """What a key means: ``first`` period (in periods since the epoch), ``groups`` (sources
    x symbols) and ``n_symbols`` as in ``_KeySpace``, ``keys`` slots, and the ``unique``
    keys the slots stand for when compacted (``None``: dense, the slot is the key)."""

    first: int
    groups: int
    n_symbols: int
    period_seconds: int
    keys: int
    unique: IntArray | None

    def cells(
        self, rows: FloatArray, fields: dict[str, FloatArray], names: FillArrays | OrderArrays
    ) -> Cells:
        """Cells of the keys with rows (``rows``: the row count per key) and these fields
        per key; the other fields are 0."""
        keep: npt.NDArray[np.intp] | None = None
        if self.unique is None:
            keep = np.flatnonzero(rows)
            key = keep.astype(np.int64)
            if keep.size == self.keys:  # every key has rows: nothing to pick
                keep = None
        else:
            key = self.unique
        values = _empty_values(key.size)
        for name, column in fields.items():
            if keep is None:
                values[:, _F[name]] = column
            else:
                # mode="clip" (the indices are valid anyway): with "raise", out is buffered.
                np.take(column, keep, out=values[:, _F[name]], mode="clip")
        period_offset, group = np.divmod(key, self.groups)
        source, symbol = np.divmod(group, self.n_symbols)
        return Cells(
            source=source,
            symbol=symbol,
            period=(period_offset + self.first) * self.period_seconds,
            values=values,
            sources=names.sources,
            symbols=names.symbols,
            period_seconds=self.period_seconds,
        )


class _KeySpace:
    """The (period, source, symbol) keys of a batch of rows, and sums of weights per key.

    Keys are period-major, ``((period - first) x sources + source) x symbols + symbol``, so
    rows in time order write near each other; laid out densely when the key space is small
    enough (the usual case), else compacted with ``np.unique``. ``sums`` folds a small
    category into the slot (outcome of a fill, has a decision price...), so that one
    ``np.bincount`` per weight gives every conditional sum, without masking million-row
    arrays (branchy, so slow). Million-row temporaries are few and reused: each fresh one
    costs its page faults, which on a VM cost more than the arithmetic.
    """

    def __init__(
        self,
        *,
        at: IntArray,
        source: IntArray,
        symbol: IntArray,
        n_sources: int,
        n_symbols: int,
        period_seconds: int,
    ) -> None:
        key = at // period_seconds
        self.first = int(key.min())
        periods = int(key.max()) - self.first + 1
        key -= self.first
        key *= n_sources
        key += source
        key *= n_symbols
        key += symbol
        groups = n_sources * n_symbols
        unique: IntArray | None = None
        if _dense_ok(periods * groups * 3, at.size):  # 3 categories: the widest split
            self.keys = periods * groups
            self.key = key
        else:
            unique, inverse = np.unique(key, return_inverse=True)
            self.keys = unique.size
            self.key = inverse.astype(np.int64, copy=False)
        self.layout = _Layout(self.first, groups, n_symbols, period_seconds, self.keys, unique)
        self._slot: IntArray | None = None

    def sums(
        self,
        category: npt.NDArray[np.uint8] | None,
        categories: int,
        weights: Sequence[FloatArray | None],
    ) -> list[FloatArray]:
        """Per weight (``None``: count the rows), its sums as (categories, keys): each
        category's sums are one contiguous row. A weight may be NaN in categories whose sums
        are never read."""
        if category is None:
            slot = self.key
        else:
            if self._slot is None:
                self._slot = np.empty_like(self.key)
            slot = self._slot
            np.multiply(category, self.keys, out=slot, dtype=np.int64)
            slot += self.key  # category-major
        size = self.keys * categories
        return [_sum_by(slot, weight, size).reshape(categories, self.keys) for weight in weights]

    def cells(
        self, rows: FloatArray, fields: dict[str, FloatArray], names: FillArrays | OrderArrays
    ) -> Cells:
        """Cells of the keys with rows (``rows``: the row count per key) and these fields
        per key; the other fields are 0."""
        return self.layout.cells(rows, fields, names)


def cells_from_fills(fills: FillArrays, *, period_seconds: int) -> Cells:
    """The cells of ``fills``: one row per (source, symbol, period) with at least one fill;
    a fill at ``at`` belongs to the period starting at ``floor(at / period_seconds)``.
    The order fields (``orders`` .. ``latency_count``) are 0."""
    _check_period_seconds(period_seconds)
    if len(fills) == 0:
        return Cells.empty(period_seconds, sources=fills.sources, symbols=fills.symbols)
    at = fills.at
    in_order = at.size < 2 or bool(np.all(at[1:] >= at[:-1]))  # as recorded: the usual case
    first, last = (at[0], at[-1]) if in_order else (at.min(), at.max())
    first, last = int(first) // period_seconds, int(last) // period_seconds
    groups = len(fills.sources) * len(fills.symbols)
    keys = (last - first + 1) * groups
    if not _dense_ok(keys * _FillSums.WIDTH, len(fills)):
        return _cells_from_fills_sparse(fills, period_seconds)
    step = _CHUNK_ROWS if in_order else len(fills)  # out of order: one chunk of every key
    sums = _FillSums(fills, period_seconds, first, keys, min(step, len(fills)))
    for start in range(0, len(fills), step):
        sums.add(start, min(start + step, len(fills)), whole=not in_order)
    count, net_sum = sums.count.T, sums.net.T
    notional_sum, slip_sum = sums.notional.T, sums.slip.T
    fills_per_key = count[0] + count[1]
    fills_per_key += count[2]
    pnl = net_sum[0] + net_sum[1]  # in the order of the one-pass sums
    pnl += net_sum[2]
    pnl += sums.fee
    layout = _Layout(first, groups, len(fills.symbols), period_seconds, keys, None)
    return layout.cells(
        fills_per_key,
        {
            "pnl": pnl,
            "fees": sums.fee,
            "fills": fills_per_key,
            "trades": count[1] + count[2],
            "wins": count[2],
            "win_pnl": net_sum[2],
            "loss_pnl": net_sum[1],
            "notional": notional_sum[0] + notional_sum[1],
            "slip_weighted": slip_sum[1],  # column 0 (no decision price) holds the NaNs
            "slip_notional": notional_sum[1],
        },
        fills,
    )


class _FillSums:
    """The sums ``cells_from_fills`` needs per dense (period, source, symbol) key, added up a
    chunk of rows at a time.

    Fills arrive in time order, so the keys of a chunk of consecutive rows span a few
    periods: the chunk's temporaries stay in cache, and each ``np.bincount`` writes a small
    array added into the chunk's periods (an out-of-order batch is one chunk of every key).
    A small category is folded into the low bits of the key (``key x 4 + outcome``, ``key x
    2 + has a decision price``), so that one ``np.bincount`` per weight gives every
    conditional sum without masking (branchy, so slow): ``count`` and ``net`` are
    (keys, 4), by outcome (0 opening, 1 closing with a loss, net <= 0, 2 closing with a win,
    3 unused); ``notional`` and ``slip`` (slippage x notional) are (keys, 2), by has a
    decision price (``slip[:, 0]`` holds NaNs); ``fee`` is (keys,). The scratch buffers
    belong to one call: nothing is shared between calls or threads.
    """

    WIDTH = 4  # slots per key of the widest split

    def __init__(
        self, fills: FillArrays, period_seconds: int, first: int, keys: int, rows: int
    ) -> None:
        """Zero sums over ``keys`` dense keys from period ``first``; chunks of <= ``rows``."""
        self.fills = fills
        self.period_seconds = period_seconds
        self.first = first
        self.keys = keys
        self.n_sources = len(fills.sources)
        self.n_symbols = len(fills.symbols)
        self.count = np.zeros((keys, 4))
        self.net = np.zeros((keys, 4))
        self.fee = np.zeros(keys)
        self.notional = np.zeros((keys, 2))
        self.slip = np.zeros((keys, 2))
        self._key = np.empty(rows, dtype=np.int64)
        self._slot = np.empty(rows, dtype=np.int64)
        self._amount = np.empty(rows)
        self._flag = np.empty(rows, dtype=np.bool_)
        self._category = np.empty(rows, dtype=np.uint8)

    def add(self, start: int, stop: int, *, whole: bool) -> None:
        """Add the sums of rows ``start:stop``: in time order, or ``whole`` (any keys)."""
        fills, rows = self.fills, slice(start, stop)
        size = stop - start
        key, slot, amount = self._key[:size], self._slot[:size], self._amount[:size]
        flag, category = self._flag[:size], self._category[:size]
        # The chunk's keys are in [low, high): whole periods, from its first row's to its last's.
        if whole:
            low_period, high_period = self.first, self.first + self.keys // self.groups
        else:
            low_period = int(fills.at[start]) // self.period_seconds
            high_period = int(fills.at[stop - 1]) // self.period_seconds + 1
        low = (low_period - self.first) * self.groups
        span = (high_period - low_period) * self.groups
        np.floor_divide(fills.at[rows], self.period_seconds, out=key)
        key -= low_period
        key *= self.n_sources
        key += fills.source[rows]
        key *= self.n_symbols
        key += fills.symbol[rows]
        fee, closing = fills.fee[rows], fills.closing[rows]
        self.fee[low : low + span] += np.bincount(key, fee, minlength=span)
        net = np.subtract(fills.pnl[rows], fee, out=amount)
        won = np.greater(net, 0.0, out=flag)
        won &= closing
        np.add(won.view(np.uint8), closing.view(np.uint8), out=category)
        np.left_shift(key, 2, out=slot)
        slot += category
        by_outcome = slice(low * 4, (low + span) * 4)
        self.count.reshape(-1)[by_outcome] += np.bincount(slot, minlength=span * 4)
        self.net.reshape(-1)[by_outcome] += np.bincount(slot, net, minlength=span * 4)
        slippage, notional = fills.slippage_bps[rows], fills.notional[rows]
        decided = np.isnan(slippage, out=flag)
        np.logical_not(decided, out=decided)
        np.left_shift(key, 1, out=slot)
        slot += decided.view(np.uint8)
        slip = np.multiply(slippage, notional, out=amount)  # net is summed: reuse it
        by_decision = slice(low * 2, (low + span) * 2)
        self.notional.reshape(-1)[by_decision] += np.bincount(slot, notional, minlength=span * 2)
        self.slip.reshape(-1)[by_decision] += np.bincount(slot, slip, minlength=span * 2)

    @property
    def groups(self) -> int:
        return self.n_sources * self.n_symbols


def _cells_from_fills_sparse(fills: FillArrays, period_seconds: int) -> Cells:
    """``cells_from_fills`` over a key space too sparse for dense sums: keys ``np.unique``-d."""
    space = _KeySpace(
        at=fills.at,
        source=fills.source,
        symbol=fills.symbol,
        n_sources=len(fills.sources),
        n_symbols=len(fills.symbols),
        period_seconds=period_seconds,
    )
    net = fills.pnl - fills.fee
    won = net > 0
    won &= fills.closing
    # outcome: 0 opening, 1 closing with a loss (net <= 0), 2 closing with a win.
    outcome = fills.closing.view(np.uint8) + won.view(np.uint8)
    count, net_sum = space.sums(outcome, 3, [None, net])
    (fee_sum,) = space.sums(None, 1, [fills.fee])
    decided = ~np.isnan(fills.slippage_bps)
    slip = np.multiply(fills.slippage_bps, fills.notional, out=net)  # net is summed: reuse it
    notional_sum, slip_sum = space.sums(decided.view(np.uint8), 2, [fills.notional, slip])
    fills_per_key = count.sum(axis=0)
    return space.cells(
        fills_per_key,
        {
            "pnl": net_sum.sum(axis=0) + fee_sum[0],
            "fees": fee_sum[0],
            "fills": fills_per_key,
            "trades": count[1] + count[2],
            "wins": count[2],
            "win_pnl": net_sum[2],
            "loss_pnl": net_sum[1],
            "notional": notional_sum.sum(axis=0),
            "slip_weighted": slip_sum[1],  # row 0 (no decision price) holds the NaNs
            "slip_notional": notional_sum[1],
        },
        fills,
    )


def cells_from_orders(orders: OrderArrays, *, period_seconds: int) -> Cells:
    """The cells of ``orders`` (periods as in ``cells_from_fills``); the fill fields are 0."""
    _check_period_seconds(period_seconds)
    if len(orders) == 0:
        return Cells.empty(period_seconds, sources=orders.sources, symbols=orders.symbols)
    space = _KeySpace(
        at=orders.at,
        source=orders.source,
        symbol=orders.symbol,
        n_sources=len(orders.sources),
        n_symbols=len(orders.symbols),
        period_seconds=period_seconds,
    )
    (rejects,) = space.sums(orders.rejected.view(np.uint8), 2, [None])
    acked = ~np.isnan(orders.latency_ms)
    count, latency_sum = space.sums(acked.view(np.uint8), 2, [None, orders.latency_ms])
    orders_per_key = count.sum(axis=0)
    return space.cells(
        orders_per_key,
        {
            "orders": orders_per_key,
            "rejects": rejects[1],
            "latency_ms_sum": latency_sum[1],  # row 0 (never acknowledged) holds the NaNs
            "latency_count": count[1],
        },
        orders,
    )


def _union(names: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Every name, in order of first appearance (the first part's codes stay as they are)."""
    return tuple(dict.fromkeys(name for group in names for name in group))


def _recode(codes: IntArray, names: tuple[str, ...], union: tuple[str, ...]) -> IntArray:
    if names == union[: len(names)]:
        return codes
    position = {name: index for index, name in enumerate(union)}
    mapping = np.array([position[name] for name in names], dtype=np.int64)
    recoded: IntArray = mapping[codes]
    return recoded


def cells_merged(*parts: Cells) -> Cells:
    """The cells of the union of the fills and orders behind ``parts``: values of equal keys
    added. Name tuples may differ; the result's are the union in order of first appearance
    and codes are remapped to them. Raises ``ValueError`` without parts or when their
    ``period_seconds`` differ.

    The usual incremental merge (a few new cells into many sorted ones) copies the big part's
    rows with the few keys it lacks inserted, then adds the small parts in; otherwise the keys
    are merged through a dense occupancy array, or ``np.unique`` when the key space is too
    sparse for one.
    """
    if not parts:
        raise ValueError("cells_merged needs at least one part")
    period_seconds = parts[0].period_seconds
    if any(part.period_seconds != period_seconds for part in parts):
        seconds = sorted({part.period_seconds for part in parts})
        raise ValueError(f"cannot merge cells of different period_seconds: {seconds}")
    sources = _union([part.sources for part in parts])
    symbols = _union([part.symbols for part in parts])
    filled = [part for part in parts if len(part)]
    if not filled:
        return Cells.empty(period_seconds, sources=sources, symbols=symbols)
    first = min(int(part.period.min()) for part in filled)
    last = max(int(part.period.max()) for part in filled)
    groups = len(sources) * len(symbols)
    codes = [
        (_recode(part.source, part.sources, sources), _recode(part.symbol, part.symbols, symbols))
        for part in filled
    ]
    keys = []
    for part, (source, symbol) in zip(filled, codes, strict=True):
        key = (part.period - first) // period_seconds * groups
        key += source * len(symbols)
        key += symbol
        keys.append(key)

    # Rows of one part are unique by key, so a fancy-indexed += adds each of them once.
    base = max(range(len(filled)), key=lambda index: len(filled[index]))
    base_key = keys[base]
    others = [index for index in range(len(filled)) if index != base]
    if base_key.size < 2 or bool(np.all(base_key[1:] > base_key[:-1])):
        # The usual incremental merge: a few rows into many sorted ones. Keys the big part
        # lacks are inserted as zero rows, then the small parts are added in.
        new_keys = [
            key[base_key[np.minimum(np.searchsorted(base_key, key), base_key.size - 1)] != key]
            for key in (keys[index] for index in others)
        ]
        missing = np.unique(np.concatenate(new_keys)) if new_keys else base_key[:0]
        if missing.size <= _MAX_INSERTED_KEYS:
            where = np.searchsorted(base_key, missing)
            merged_key = np.insert(base_key, where, missing)
            period_offset, group = np.divmod(missing, groups)
            source, symbol = np.divmod(group, len(symbols))
            values = _rows_inserted(filled[base].values, where)
            for index in others:
                values[np.searchsorted(merged_key, keys[index])] += filled[index].values
            return Cells(
                source=np.insert(codes[base][0], where, source),
                symbol=np.insert(codes[base][1], where, symbol),
                period=np.insert(
                    filled[base].period, where, period_offset * period_seconds + first
                ),
                values=values,
                sources=sources,
                symbols=symbols,
                period_seconds=period_seconds,
            )

    slots = ((last - first) // period_seconds + 1) * groups
    if _dense_ok(slots, sum(len(part) for part in filled)):
        seen = np.zeros(slots, dtype=np.bool_)
        for key in keys:
            seen[key] = True
        merged_key = np.flatnonzero(seen).astype(np.int64)
    else:
        merged_key = np.unique(np.concatenate(keys))
    values = _empty_values(merged_key.size)
    for key, part in zip(keys, filled, strict=True):
        rows = np.searchsorted(merged_key, key)
        for field in range(_NFIELDS):  # column by column: each is contiguous
            values[rows, field] += part.values[:, field]
    period_offset, group = np.divmod(merged_key, groups)
    source, symbol = np.divmod(group, len(symbols))
    return Cells(
        source=source,
        symbol=symbol,
        period=period_offset * period_seconds + first,
        values=values,
        sources=sources,
        symbols=symbols,
        period_seconds=period_seconds,
    )


def _rows_inserted(values: FloatArray, where: npt.NDArray[np.intp]) -> FloatArray:
    """``values`` with a zero row inserted before each row index in ``where`` (ascending),
    column-major. Block copies between the insertions: ``np.insert`` masks row by row."""
    out = np.empty((values.shape[0] + where.size, _NFIELDS), order="F")
    done = 0
    for inserted, position in enumerate(where.tolist()):
        out[done + inserted : position + inserted] = values[done:position]
        out[position + inserted] = 0.0
        done = position
    out[done + where.size :] = values[done:]
    return out


# --- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Periods ``floor(start) <= period < end`` (epoch seconds; ``start`` is floored to a
    multiple of ``period_seconds``). ``period_seconds`` is the returns' period: the cells'
    own, or a multiple of it (daily cells give weekly returns with ``7 x 86400``)."""

    start: int
    end: int
    period_seconds: int

    def __post_init__(self) -> None:
        _check_period_seconds(self.period_seconds)
        if self.end < self.start:
            raise ValueError(f"window end {self.end} is before its start {self.start}")

    @property
    def first(self) -> int:
        """The first period's start: ``start`` floored to the period."""
        return self.start // self.period_seconds * self.period_seconds

    @property
    def periods(self) -> int:
        """How many periods the grid has (the last one may run past ``end``)."""
        return max(0, -((self.first - self.end) // self.period_seconds))


class _Grouped(NamedTuple):
    """The window's cells summed per group: ``names`` of the groups present, ``totals``
    (groups, fields) and the dense (groups, periods) ``per_period`` sums asked for."""

    names: list[str]
    totals: FloatArray
    per_period: dict[str, FloatArray]


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """``numerator / denominator``, NaN where the denominator is 0 (and without a warning)."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


class _Laned(NamedTuple):
    """Sums by ``slot`` (0 <= slot < size) spread over ``_LANES`` partial sums per slot.

    Rows of one group often come in runs (cells sorted by period, source, symbol; every row
    for "overall"), and a bincount run adding into one bin waits on each previous add: with
    consecutive rows in different lanes, a 10-20 row run no longer costs 2-3x."""

    spread: IntArray
    size: int

    lanes: int

    @classmethod
    def of(cls, slot: IntArray, size: int) -> _Laned:
        lanes = _LANES if size <= _LANED_MAX_SIZE else 1  # big grids: runs are rare anyway
        spread = np.arange(slot.size, dtype=np.int64)
        spread &= lanes - 1
        spread *= size
        spread += slot
        return cls(spread, size, lanes)

    def sums(self, weights: FloatArray | None) -> FloatArray:
        laned = _sum_by(self.spread, weights, self.size * self.lanes)
        total: FloatArray = laned.reshape(self.lanes, self.size).sum(axis=0)
        return total


def _grouped(
    cells: Cells,
    *,
    by: GROUP_BY,
    window: Window,
    groups: Collection[str] | None,
    per_period: Sequence[str],
) -> _Grouped:
    if window.period_seconds % cells.period_seconds:
        raise ValueError(
            f"the window's period ({window.period_seconds} s) must be a multiple of the "
            f"cells' ({cells.period_seconds} s)"
        )
    if by == "source":
        names, codes = list(cells.sources), cells.source
    elif by == "symbol":
        names, codes = list(cells.symbols), cells.symbol
    elif by == OVERALL:
        if groups is not None:
            raise ValueError("groups cannot be chosen with by='overall'")
        names, codes = [OVERALL], np.zeros(len(cells), dtype=np.int64)
    else:
        raise ValueError(f"by must be 'source', 'symbol' or 'overall', got {by!r}")
    inside = cells.period >= window.first
    inside &= cells.period < window.end
    if groups is not None:
        chosen = set(groups)
        inside &= np.isin(codes, [index for index, name in enumerate(names) if name in chosen])
    rows = np.flatnonzero(inside)
    everything = rows.size == len(cells)  # the usual full-span window: no gathering

    def column(values: IntArray | FloatArray) -> npt.NDArray[Any]:
        return values if everything else np.take(values, rows)

    count = len(names)
    group = column(codes)
    # A loop over the fields, each a contiguous column (Cells.values is column-major).
    totals = np.empty((count, _NFIELDS))
    if by == OVERALL:
        for field in range(_NFIELDS):
            totals[0, field] = column(cells.values[:, field]).sum()
        present = np.zeros(1, dtype=np.intp)  # overall always has its row
    else:
        by_group = _Laned.of(group, count)
        for field in range(_NFIELDS):
            totals[:, field] = by_group.sums(column(cells.values[:, field]))
        present = np.flatnonzero(by_group.sums(None))
    periods = window.periods
    if count * periods > _MAX_GRID:
        raise ValueError(f"{count} groups x {periods} periods is too fine a grid to compute")
    time_slot = group * periods
    time_slot += (column(cells.period) - window.first) // window.period_seconds
    by_period = _Laned.of(time_slot, count * periods)
    dense: dict[str, FloatArray] = {}
    for name in per_period:
        if name == "net":
            weight = column(cells.values[:, _F["pnl"]]) - column(cells.values[:, _F["fees"]])
        else:
            weight = column(cells.values[:, _F[name]])
        dense[name] = by_period.sums(weight).reshape(count, periods)[present]
    return _Grouped(
        names=[names[index] for index in present], totals=totals[present], per_period=dense
    )


class _RiskStats(NamedTuple):
    sharpe: FloatArray
    sortino: FloatArray
    max_drawdown: FloatArray
    max_drawdown_usdt: FloatArray


def _risk_stats(net: FloatArray, *, capital: float, period_seconds: int) -> _RiskStats:
    """Sharpe, Sortino and drawdowns of every row of ``net`` (groups x periods) at once."""
    groups, periods = net.shape
    nan = np.full(groups, np.nan)
    if periods == 0:
        return _RiskStats(nan, nan, nan, nan)
    equity = np.cumsum(net, axis=1)
    equity += capital
    before = np.empty_like(equity)
    before[:, 0] = capital
    before[:, 1:] = equity[:, :-1]
    peak = np.maximum.accumulate(equity, axis=1)
    np.maximum(peak, capital, out=peak)
    max_drawdown = (equity / peak).min(axis=1) - 1.0
    max_drawdown_usdt = (equity - peak).min(axis=1)
    if periods < 2:
        return _RiskStats(nan, nan.copy(), max_drawdown, max_drawdown_usdt)
    solvent = (before > 0).all(axis=1)
    returns = net / np.where(before > 0, before, np.inf)  # ruined rows are NaN-ed below
    mean = returns.mean(axis=1)
    # Equal returns have zero deviation; np.std can leave a 1e-18 residue, as empyrical notes.
    constant = returns.max(axis=1) == returns.min(axis=1)
    deviation = np.where(constant, 0.0, returns.std(axis=1, ddof=1))
    downside = np.sqrt(np.mean(np.square(np.minimum(returns, 0.0)), axis=1))
    root = math.sqrt(SECONDS_PER_YEAR / period_seconds)
    sharpe = _ratio(mean, deviation) * root
    sortino = _ratio(mean, downside) * root
    sharpe[~solvent] = np.nan
    sortino[~solvent] = np.nan
    return _RiskStats(sharpe, sortino, max_drawdown, max_drawdown_usdt)


def group_metrics(
    cells: Cells,
    *,
    by: GROUP_BY,
    window: Window,
    capital: float,
    groups: Collection[str] | None = None,
) -> pd.DataFrame:
    """Router-health metrics per source, per symbol or overall (the module docstring defines
    them), one row per group with at least one cell in the window; ``overall`` always has its
    row (zeros and NaNs when the window is empty). Rows follow the order of the cells' name
    tuple; the index is named after ``by``. ``groups`` restricts the rows to those names
    (e.g. the one source an incremental update touched), at a fraction of the cost.

    Every group is computed at once: a dense (groups x periods) matrix of net PnL, cumulative
    sums and running maxima along the periods. Raises ``ValueError`` for a non-positive or
    non-finite ``capital`` or a window period that is not a multiple of the cells'.
    """
    if not (math.isfinite(capital) and capital > 0):
        raise ValueError(f"capital must be a finite number > 0, got {capital}")
    grouped = _grouped(cells, by=by, window=window, groups=groups, per_period=("net",))
    totals = grouped.totals

    def total(name: str) -> FloatArray:
        column: FloatArray = totals[:, _F[name]]
        return column

    trades, wins = total("trades"), total("wins")
    win_pnl, loss_pnl = total("win_pnl"), total("loss_pnl")
    risk = _risk_stats(
        grouped.per_period["net"], capital=capital, period_seconds=window.period_seconds
    )
    columns: dict[str, npt.ArrayLike] = {
        "realized_pnl": total("pnl") - total("fees"),
        "fees": total("fees"),
        "fills": total("fills").astype(np.int64),
        "trades": trades.astype(np.int64),
        "hit_rate": _ratio(wins, trades),
        "avg_win": _ratio(win_pnl, wins),
        "avg_loss": _ratio(loss_pnl, trades - wins),
        "profit_factor": _ratio(win_pnl, -loss_pnl),
        "expectancy": _ratio(win_pnl + loss_pnl, trades),
        "sharpe": risk.sharpe,
        "sortino": risk.sortino,
        "max_drawdown": risk.max_drawdown,
        "max_drawdown_usdt": risk.max_drawdown_usdt,
        "notional": total("notional"),
        "slippage_bps": _ratio(total("slip_weighted"), total("slip_notional")),
        "orders": total("orders").astype(np.int64),
        "reject_rate": _ratio(total("rejects"), total("orders")),
        "latency_ms": _ratio(total("latency_ms_sum"), total("latency_count")),
    }
    return pd.DataFrame(columns, index=pd.Index(grouped.names, name=by))


# --- curves --------------------------------------------------------------------------------


def _bucket_ends(points: int, max_points: int) -> npt.NDArray[np.intp]:
    """Indices of the last point of each of ``min(points, max_points)`` near-equal buckets;
    the last index is always ``points - 1``, so a downsampled curve ends on the exact value."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if points <= max_points:
        return np.arange(points)
    bucket = np.arange(1, max_points + 1)
    # Bucket k holds the points i with floor(i x max_points / points) == k.
    ends: npt.NDArray[np.intp] = -(-(bucket * points) // max_points) - 1
    return ends


def group_curves(
    cells: Cells,
    *,
    by: GROUP_BY,
    window: Window,
    max_points: int = 500,
    groups: Collection[str] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Chart series per group (the groups ``group_metrics`` would give), on the window's
    period grid: ``t``, the period starts (epoch seconds, as floats); ``cum_pnl``, the net PnL
    accumulated to the end of each period; ``hit_rate``, wins / trades accumulated so far,
    ``float('nan')`` until the first trade (NaN is not JSON: the caller writes it as null).

    With more than ``max_points`` periods the grid is cut into ``max_points`` near-equal
    buckets and each keeps its last point: both series are cumulative, so a kept point loses
    nothing but the path between, and the last point (the current totals) is exact.
    """
    grouped = _grouped(
        cells, by=by, window=window, groups=groups, per_period=("net", "wins", "trades")
    )
    keep = _bucket_ends(window.periods, max_points)
    times = (window.first + keep * window.period_seconds).astype(np.float64).tolist()
    cum_pnl = np.cumsum(grouped.per_period["net"], axis=1)[:, keep]
    hit_rate = _ratio(
        np.cumsum(grouped.per_period["wins"], axis=1)[:, keep],
        np.cumsum(grouped.per_period["trades"], axis=1)[:, keep],
    )
    return {
        name: {"t": list(times), "cum_pnl": pnl, "hit_rate": hits}
        for name, pnl, hits in zip(grouped.names, cum_pnl.tolist(), hit_rate.tolist(), strict=True)
    }


class NavCurve(TypedDict):
    """``t``, ``nav`` and ``drawdown`` (downsampled); ``max_drawdown`` over every point."""

    t: list[float]
    nav: list[float]
    drawdown: list[float]
    max_drawdown: float


def nav_curve(
    at: npt.ArrayLike,
    nav: npt.ArrayLike,
    cash_flow: npt.ArrayLike,
    *,
    max_points: int = 500,
) -> NavCurve:
    """The account's NAV with its drawdown, net of deposits and withdrawals.

    ``at`` is ascending epoch seconds; ``nav`` the NAV at each point (> 0); ``cash_flow`` the
    net deposit (+) or withdrawal (-) since the previous point, which is money moved, not
    performance. The time-weighted index is ``I_0 = 1``, ``I_t = I_{t-1} x (nav_t -
    cash_flow_t) / nav_{t-1}`` (the first point's cash flow predates the record and is
    ignored), and ``drawdown_t = I_t / max_{s<=t} I_s - 1``: a deposit raises the NAV but
    neither recovers a drawdown nor makes a new peak. ``max_drawdown`` is the minimum over
    every point (NaN without points).

    Downsampled to at most ``max_points`` buckets: each keeps its last ``t`` and ``nav`` and
    its *worst* drawdown, so the deepest trough stays visible and the last values are exact.
    """
    times = np.asarray(at, dtype=np.int64)
    navs = np.asarray(nav, dtype=np.float64)
    flows = np.asarray(cash_flow, dtype=np.float64)
    if not (times.ndim == navs.ndim == flows.ndim == 1 and times.size == navs.size == flows.size):
        raise ValueError("at, nav and cash_flow must be 1-D arrays of the same length")
    if times.size == 0:
        return {"t": [], "nav": [], "drawdown": [], "max_drawdown": math.nan}
    if np.any(np.diff(times) < 0):
        raise ValueError("at must be ascending")
    if not np.all(navs > 0):
        raise ValueError("nav must be > 0 at every point")
    growth = np.ones_like(navs)
    growth[1:] = (navs[1:] - flows[1:]) / navs[:-1]
    index = np.cumprod(growth)
    drawdown = index / np.maximum.accumulate(index) - 1.0
    keep = _bucket_ends(times.size, max_points)
    starts = np.concatenate(([0], keep[:-1] + 1))
    return {
        "t": times[keep].astype(np.float64).tolist(),
        "nav": navs[keep].tolist(),
        "drawdown": np.minimum.reduceat(drawdown, starts).tolist(),
        "max_drawdown": float(drawdown.min()),
    }
