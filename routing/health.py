"""Router health: the cached aggregates the dashboard renders, kept up to date incrementally.

Every attributed fill (``FillAttribution``) and every order sent is added once to additive
cells (``HealthCell``: sums per source, symbol and hour or day); ``router_health_refresh``
then computes each window's metrics from the cells (``routing.analytics``, vectorised) and
stores them as ``RouterHealthSummary`` rows, which is all the pages and their JSON endpoints
read: a page never touches raw fills. It runs after fills commit (queued by
``routing.books.fills_record``) and every minute from beat, and pushes the new tables to open
pages; each fill is also pushed on its own the moment it commits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from celery import current_app
from django.db import transaction
from django.utils import timezone

from routing.accounting import UNATTRIBUTED, PositionState, unrealized_pnl
from routing.analytics import (
    CELL_FIELDS,
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
from routing.models import (
    FillAttribution,
    HealthCell,
    MarketBar,
    NavPoint,
    Order,
    RouterHealthSummary,
    SignalPosition,
)
from tradingsite.decimals import quantize
from tradingsite.display import number_text
from tradingsite.live import live_push
from tradingsite.locks import single_flight
from tradingsite.redisconn import redis_client, redis_key
from tradingsite.replaydb import replay_active

logger = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
PERIODS = (HOUR, DAY)
HOUR_CELLS_KEPT = timedelta(days=8)  # hourly cells serve the 24h and 7d windows only
INGEST_BATCH = 50_000


@dataclass(frozen=True)
class WindowSpec:
    key: str
    label: str
    seconds: int | None  # None: everything
    period_seconds: int


WINDOWS = (
    WindowSpec("24h", "last 24 hours", DAY, HOUR),
    WindowSpec("7d", "last 7 days", 7 * DAY, HOUR),
    WindowSpec("30d", "last 30 days", 30 * DAY, DAY),
    WindowSpec("all", "all time", None, DAY),
)
WINDOW_KEYS = tuple(spec.key for spec in WINDOWS)
DEFAULT_WINDOW = "7d"
NAV_KEY = "nav"
CURVES = ":curves"  # key suffix of a window's curves
NAV_HISTORY = timedelta(days=30)

REFRESH_TASK = "routing.tasks.router_health_refresh_task"

# Columns of the tables, in order, with how each is shown. One formatter for the page, its
# live updates and the API's "display" values, so all three always agree.
METRIC_FORMATS: dict[str, str] = {
    "realized_pnl": "money",
    "unrealized_pnl": "money",
    "trades": "count",
    "hit_rate": "percent",
    "avg_win": "money",
    "avg_loss": "money",
    "profit_factor": "ratio",
    "expectancy": "money",
    "sharpe": "ratio",
    "sortino": "ratio",
    "max_drawdown": "percent2",
    "fees": "money",
    "notional": "money",
    "slippage_bps": "bps",
    "latency_ms": "ms",
    "reject_rate": "percent",
    "orders": "count",
    "fills": "count",
}
PERFORMANCE_COLUMNS = (
    "realized_pnl",
    "unrealized_pnl",
    "trades",
    "hit_rate",
    "avg_win",
    "avg_loss",
    "profit_factor",
    "expectancy",
    "sharpe",
    "sortino",
    "max_drawdown",
)
EXECUTION_COLUMNS = (
    "fills",
    "notional",
    "slippage_bps",
    "latency_ms",
    "orders",
    "reject_rate",
    "fees",
)


def metric_display(name: str, value: float | None) -> str:
    """How ``value`` of metric ``name`` is shown (``NO_VALUE`` when it has none)."""
    return number_text(METRIC_FORMATS.get(name, "ratio"), value)


def attribution_as_dict(row: FillAttribution) -> dict[str, Any]:
    """A fill's share as pushed to open pages (and listed in the recent fills)."""
    net = row.realized_pnl - row.fee
    return {
        "source": row.source,
        "symbol": row.symbol,
        "side": row.side,
        "quantity": str(quantize(row.quantity)),
        "price": str(quantize(row.price)),
        "fee": str(row.fee.quantize(Decimal("0.00000001"))),
        "realized_pnl": str(net.quantize(Decimal("0.00000001"))),
        "closing": row.closing,
        "at": row.filled_at.isoformat(),
    }


def health_refresh_soon() -> None:
    """Queue a refresh (after new fills); a refresh already running covers it, and beat's
    minute refresh covers a lost message. Never waits on a broker that is down (no publish
    retries, no result): the books are already committed, the page catches up later. A
    replay's fills are ingested by the replay itself (``routing.replay``)."""
    if replay_active() is not None:
        return
    try:
        current_app.send_task(
            REFRESH_TASK, queue="default", expires=60, retry=False, ignore_result=True
        )
    except Exception:
        logger.exception("could not queue the router health refresh")


# --- Ingest: rows -> cells --------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _codes(names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    table = tuple(sorted(set(names)))
    index = {name: i for i, name in enumerate(table)}
    return np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names)), table


def fill_arrays(rows: Sequence[FillAttribution]) -> FillArrays:
    source, sources = _codes([row.source for row in rows])
    symbol, symbols = _codes([row.symbol for row in rows])
    notional = np.array([float(row.quantity * row.price) for row in rows], dtype=np.float64)
    slippage = np.array([_slippage_bps(row) for row in rows], dtype=np.float64)
    return FillArrays(
        at=np.array([_epoch(row.filled_at) for row in rows], dtype=np.int64),
        source=source,
        symbol=symbol,
        pnl=np.array([float(row.realized_pnl) for row in rows], dtype=np.float64),
        fee=np.array([float(row.fee) for row in rows], dtype=np.float64),
        closing=np.array([row.closing for row in rows], dtype=bool),
        notional=notional,
        slippage_bps=slippage,
        sources=sources,
        symbols=symbols,
    )


def _slippage_bps(row: FillAttribution) -> float:
    """What the fill cost against the decision price, in bps (positive: worse)."""
    if row.decision_price is None or row.decision_price <= 0:
        return math.nan
    move = (row.price - row.decision_price) / row.decision_price * 10_000
    return float(move if row.side == "BUY" else -move)


_NOT_DEFINITIVE = (Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.UNKNOWN)


def order_arrays(rows: Sequence[Order]) -> OrderArrays:
    source, sources = _codes(
        [row.signal.source if row.signal is not None else UNATTRIBUTED for row in rows]
    )
    symbol, symbols = _codes([row.symbol for row in rows])
    latency = [
        (row.acked_at - row.submitted_at).total_seconds() * 1000
        if row.acked_at is not None and row.submitted_at is not None
        else math.nan
        for row in rows
    ]
    return OrderArrays(
        at=np.array([_epoch(row.decided_at) for row in rows], dtype=np.int64),
        source=source,
        symbol=symbol,
        rejected=np.array([row.status == Order.Status.REJECTED for row in rows], dtype=bool),
        latency_ms=np.array(latency, dtype=np.float64),
        sources=sources,
        symbols=symbols,
    )


def cells_add(cells: Cells) -> int:
    """Add ``cells`` into the stored ones (one row per key; sums add). Caller holds the
    refresh lock and a transaction."""
    if len(cells) == 0:
        return 0
    keys = [
        (int(start), cells.sources[int(source)], cells.symbols[int(symbol)])
        for start, source, symbol in zip(cells.period, cells.source, cells.symbol, strict=True)
    ]
    existing = {
        (row.start, row.source, row.symbol): row
        for row in HealthCell.objects.select_for_update().filter(
            period_seconds=cells.period_seconds,
            start__in={key[0] for key in keys},
            source__in={key[1] for key in keys},
            symbol__in={key[2] for key in keys},
        )
    }
    created, updated = [], []
    for key, values in zip(keys, cells.values.tolist(), strict=True):
        row = existing.get(key)
        if row is None:
            created.append(
                HealthCell(
                    period_seconds=cells.period_seconds,
                    start=key[0],
                    source=key[1],
                    symbol=key[2],
                    values=values,
                )
            )
        else:
            row.values = [a + b for a, b in zip(row.values, values, strict=True)]
            updated.append(row)
    HealthCell.objects.bulk_create(created, batch_size=2000)
    HealthCell.objects.bulk_update(updated, ["values"], batch_size=2000)
    return len(keys)


def health_ingest(*, batch: int = INGEST_BATCH) -> int:
    """Add every fill share and sent order not counted yet to the cells; how many rows."""
    total = 0
    while True:
        with transaction.atomic():
            fills = list(
                FillAttribution.objects.select_for_update()
                .filter(health_counted=False)
                .order_by("id")[:batch]
            )
            orders = list(
                Order.objects.select_for_update(of=("self",))
                .select_related("signal")
                .filter(health_counted=False)
                .exclude(status__in=_NOT_DEFINITIVE)
                .order_by("id")[:batch]
            )
            if not fills and not orders:
                return total
            sent = [order for order in orders if order.submitted_at is not None]
            for period in PERIODS:
                parts = []
                if fills:
                    parts.append(cells_from_fills(fill_arrays(fills), period_seconds=period))
                if sent:
                    parts.append(cells_from_orders(order_arrays(sent), period_seconds=period))
                if parts:
                    cells_add(cells_merged(*parts))
            FillAttribution.objects.filter(pk__in=[row.pk for row in fills]).update(
                health_counted=True
            )
            Order.objects.filter(pk__in=[row.pk for row in orders]).update(health_counted=True)
            total += len(fills) + len(orders)
        if len(fills) < batch and len(orders) < batch:
            return total


def cells_load(*, period_seconds: int, start: int | None) -> Cells:
    rows = HealthCell.objects.filter(period_seconds=period_seconds)
    if start is not None:
        rows = rows.filter(start__gte=start)
    data = list(rows.values_list("start", "source", "symbol", "values"))
    if not data:
        return Cells.empty(period_seconds)
    source, sources = _codes([row[1] for row in data])
    symbol, symbols = _codes([row[2] for row in data])
    return Cells(
        source=source,
        symbol=symbol,
        period=np.array([row[0] for row in data], dtype=np.int64),
        values=np.array([row[3] for row in data], dtype=np.float64).reshape(
            len(data), len(CELL_FIELDS)
        ),
        sources=sources,
        symbols=symbols,
        period_seconds=period_seconds,
    )


# --- Summaries: cells -> what the pages show ---------------------------------------------


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def last_closes(symbols: Iterable[str]) -> dict[str, Decimal]:
    """The last closed bar's close of each of ``symbols`` that has a bar (the mark the
    dashboard values open positions at)."""
    marks = {}
    for symbol in set(symbols):
        close = (
            MarketBar.objects.filter(symbol=symbol)
            .order_by("-close_time")
            .values_list("close", flat=True)
            .first()
        )
        if close is not None:
            marks[symbol] = close
    return marks


def unrealized_by(by: str) -> dict[str, float]:
    """Unrealised PnL of the open virtual positions at the last closes, by source or symbol."""
    marks = last_closes(SignalPosition.objects.exclude(quantity=0).values_list("symbol", flat=True))
    totals: dict[str, float] = {}
    for row in SignalPosition.objects.exclude(quantity=0):
        mark = marks.get(row.symbol)
        if mark is None:
            continue
        state = PositionState(
            quantity=row.quantity, entry_price=row.entry_price, entry_residue=row.entry_residue
        )
        key = {"source": row.source, "symbol": row.symbol}.get(by, "overall")
        totals[key] = totals.get(key, 0.0) + float(unrealized_pnl(state, mark_price=mark))
    return totals


def _rows(frame: Any, unrealized: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name, record in frame.iterrows():
        values: dict[str, float | None] = {
            column: _number(record[column]) for column in frame.columns
        }
        values["unrealized_pnl"] = unrealized.get(str(name), 0.0)
        rows.append(
            {
                "name": str(name),
                "values": values,
                "display": {
                    column: metric_display(column, values.get(column)) for column in METRIC_FORMATS
                },
            }
        )
    return rows


def _capital(start: datetime | None) -> float:
    points = NavPoint.objects.order_by("at", "id")
    if start is not None:
        points = points.filter(at__gte=start)
    first = points.values_list("nav", flat=True).first()
    if first is None:
        first = NavPoint.objects.order_by("-at", "-id").values_list("nav", flat=True).first()
    return float(first) if first is not None and first > 0 else 1.0


def window_summary(
    spec: WindowSpec, *, now: datetime, unrealized: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    """One window's tables and curves from the stored cells; ``unrealized`` (by "source",
    "symbol" and "overall": the open virtual positions now) is read once per refresh."""
    if unrealized is None:
        unrealized = {by: unrealized_by(by) for by in ("source", "symbol", "overall")}
    end = (_epoch(now) // spec.period_seconds + 1) * spec.period_seconds
    cells_start = None if spec.seconds is None else end - spec.seconds
    cells = cells_load(period_seconds=spec.period_seconds, start=cells_start)
    if spec.seconds is not None:
        start = end - spec.seconds
    elif len(cells):
        start = int(cells.period.min())
    else:
        start = end - spec.period_seconds
    window = Window(start=start, end=end, period_seconds=spec.period_seconds)
    capital = _capital(
        None if spec.seconds is None else datetime.fromtimestamp(start, tz=now.tzinfo)
    )
    tables: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for by in ("source", "symbol", "overall"):
        frame = group_metrics(cells, by=by, window=window, capital=capital)
        tables[by] = _rows(frame, unrealized[by])
        if by != "overall":
            curves[by] = _finite(group_curves(cells, by=by, window=window))
    return {
        "window": spec.key,
        "label": spec.label,
        "start": start,
        "end": end,
        "period_seconds": spec.period_seconds,
        "capital": capital,
        "computed_at": now.isoformat(),
        "by_source": tables["source"],
        "by_symbol": tables["symbol"],
        "overall": tables["overall"][0] if tables["overall"] else None,
        "curves": curves,
    }


def nav_summary(*, now: datetime) -> dict[str, Any]:
    points = list(
        NavPoint.objects.filter(at__gte=now - NAV_HISTORY)
        .order_by("at", "id")
        .values_list("at", "nav", "cash_flow")
    )
    if not points:
        return {"computed_at": now.isoformat(), "t": [], "nav": [], "drawdown": [], "last": None}
    curve = nav_curve(
        np.array([_epoch(at) for at, _, _ in points], dtype=np.int64),
        np.array([float(nav) for _, nav, _ in points], dtype=np.float64),
        np.array([float(flow) for _, _, flow in points], dtype=np.float64),
    )
    return {
        "computed_at": now.isoformat(),
        **_finite(dict(curve)),
        "last": {"at": points[-1][0].isoformat(), "nav": str(points[-1][1])},
    }


def _save(key: str, payload: dict[str, Any], now: datetime) -> None:
    RouterHealthSummary.objects.update_or_create(
        key=key, defaults={"payload": payload, "computed_at": now}
    )


def _tables(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        name: payload[name]
        for name in ("window", "computed_at", "by_source", "by_symbol", "overall")
    }


@dataclass(frozen=True)
class RefreshReport:
    ran: bool
    ingested: int = 0


def router_health_refresh(*, now: datetime | None = None) -> RefreshReport:
    """Add what is new to the cells, recompute every window's summary and the NAV curve,
    store them and push the tables to open pages.

    One at a time (a lock). A refresh asked for while one runs is not lost: it leaves a
    mark that makes the running one go round again, so fills committed during a refresh
    reach the pages within one more refresh, not at beat's next minute.
    """
    again = redis_key("router-health", "again")
    with single_flight("router-health-refresh", ttl_seconds=300) as run:
        if not run.acquired:
            redis_client().set(again, 1, ex=300)
            return RefreshReport(ran=False)
        ingested = 0
        for _ in range(MAX_ROUNDS):
            redis_client().delete(again)
            ingested += _refresh_once(now or timezone.now())
            run.renew()
            if now is not None or not redis_client().exists(again):
                break
        return RefreshReport(ran=True, ingested=ingested)


MAX_ROUNDS = 3


def router_health_recompute(*, now: datetime) -> int:
    """One refresh without the live refresh's lock: for a replay's own database, where
    nothing else refreshes (``routing.replay``)."""
    return _refresh_once(now)


def _refresh_once(moment: datetime) -> int:
    ingested = health_ingest()
    unrealized = {by: unrealized_by(by) for by in ("source", "symbol", "overall")}
    summaries = {
        spec.key: window_summary(spec, now=moment, unrealized=unrealized) for spec in WINDOWS
    }
    nav = nav_summary(now=moment)
    with transaction.atomic():
        for key, payload in summaries.items():
            # The curves apart: the page renders the tables, its charts fetch the curves.
            _save(key, {k: v for k, v in payload.items() if k != "curves"}, moment)
            _save(f"{key}{CURVES}", payload["curves"], moment)
        _save(NAV_KEY, nav, moment)
        live_push(
            event="routing.health",
            data={
                "computed_at": moment.isoformat(),
                "windows": {key: _tables(payload) for key, payload in summaries.items()},
            },
        )
    return ingested


def health_cells_prune(*, now: datetime | None = None) -> int:
    """Drop hourly cells older than the hourly windows need."""
    cutoff = _epoch((now or timezone.now()) - HOUR_CELLS_KEPT)
    deleted, _ = HealthCell.objects.filter(period_seconds=HOUR, start__lt=cutoff).delete()
    return deleted


def router_health_rebuild(*, now: datetime | None = None) -> RefreshReport:
    """Recount everything from the fill shares and orders (after a restore or a change of
    definitions): the cells are emptied and rebuilt, then the summaries."""
    with transaction.atomic():
        HealthCell.objects.all().delete()
        FillAttribution.objects.filter(health_counted=True).update(health_counted=False)
        Order.objects.filter(health_counted=True).update(health_counted=False)
    return router_health_refresh(now=now)


# --- Selectors: what pages and endpoints read ----------------------------------------------


def router_health_summary(window: str) -> dict[str, Any] | None:
    """The stored summary of ``window`` (None before the first refresh)."""
    if window not in WINDOW_KEYS:
        raise ValueError(f"unknown window {window!r}: one of {', '.join(WINDOW_KEYS)}")
    return RouterHealthSummary.objects.filter(key=window).values_list("payload", flat=True).first()


def router_health_curves(window: str) -> dict[str, Any] | None:
    """The stored cumulative PnL and hit-rate curves of ``window``, by source and symbol."""
    if window not in WINDOW_KEYS:
        raise ValueError(f"unknown window {window!r}: one of {', '.join(WINDOW_KEYS)}")
    return (
        RouterHealthSummary.objects.filter(key=f"{window}{CURVES}")
        .values_list("payload", flat=True)
        .first()
    )


def nav_curve_summary() -> dict[str, Any] | None:
    return RouterHealthSummary.objects.filter(key=NAV_KEY).values_list("payload", flat=True).first()


def recent_fills(*, limit: int = 20) -> list[dict[str, Any]]:
    return [
        attribution_as_dict(row)
        for row in FillAttribution.objects.order_by("-filled_at", "-id")[:limit]
    ]
