"""Klines from Binance public-data CSV files into ``MarketBar`` rows.

Every published form is accepted: futures files with a header row (from about 2022) or
without one (older), and timestamps in milliseconds or microseconds (spot files from 2025).
Columns: open time, open, high, low, close, volume, close time, quote volume, trades, taker buy
base volume, taker buy quote volume, ignore. A file is imported whole or not at all: every bad
row is reported with its line number and nothing is written.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction

from routing.models import MarketBar

INTERVALS = {
    "1m": timedelta(minutes=1),
    "3m": timedelta(minutes=3),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "6h": timedelta(hours=6),
    "8h": timedelta(hours=8),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "1w": timedelta(weeks=1),
}
# Timestamps above this many units since 1970 are microseconds (year 5138 in milliseconds).
MICROSECONDS_ABOVE = 10**14
MIN_COLUMNS = 11
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BATCH = 2000


class KlinesImportError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        super().__init__(
            f"{len(problems)} bad row(s), nothing imported:\n" + "\n".join(shown) + more
        )
        self.problems = problems


@dataclass(frozen=True)
class ParsedBar:
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int


def _moment(text: str) -> datetime:
    units = int(text)
    if units > MICROSECONDS_ABOVE:
        return EPOCH + timedelta(microseconds=units)
    return EPOCH + timedelta(milliseconds=units)


def _is_header(row: list[str]) -> bool:
    return bool(row) and not row[0].strip().lstrip("-").isdigit()


def parse_row(row: list[str], *, interval: timedelta) -> ParsedBar:
    """One CSV row as a bar; ``ValueError`` says what is wrong with it."""
    if len(row) < MIN_COLUMNS:
        raise ValueError(f"expected at least {MIN_COLUMNS} columns, got {len(row)}")
    try:
        open_time, close_time = _moment(row[0].strip()), _moment(row[6].strip())
        o, h, low, c, volume, quote = (Decimal(row[i].strip()) for i in (1, 2, 3, 4, 5, 7))
        trades = int(row[8].strip())
    except (ValueError, InvalidOperation, OverflowError, OSError):
        raise ValueError("a number or timestamp cannot be read") from None
    if not all(v.is_finite() for v in (o, h, low, c, volume, quote)):
        raise ValueError("prices and volumes must be finite")
    if low <= 0 or not (low <= min(o, c) and max(o, c) <= h):
        raise ValueError(f"inconsistent prices open={o} high={h} low={low} close={c}")
    if volume < 0 or quote < 0 or trades < 0:
        raise ValueError("volume, quote volume and trades cannot be negative")
    if abs(close_time - open_time - interval) >= timedelta(seconds=1):
        raise ValueError(f"close time {close_time:%Y-%m-%d %H:%M:%S} does not fit the interval")
    return ParsedBar(open_time, close_time, o, h, low, c, volume, quote, trades)


def parse_file(path: Path, *, interval: str) -> list[ParsedBar]:
    """Every bar of the file, or ``KlinesImportError`` listing every bad row by line number."""
    step = INTERVALS.get(interval)
    if step is None:
        raise KlinesImportError([f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}"])
    bars: list[ParsedBar] = []
    problems: list[str] = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or (line == 1 and _is_header(row)):
                continue
            try:
                bars.append(parse_row(row, interval=step))
            except ValueError as error:
                problems.append(f"line {line}: {error}")
    seen: set[datetime] = set()
    for n, bar in enumerate(bars):
        if bar.open_time in seen:
            problems.append(f"bar {n + 1}: open time {bar.open_time:%Y-%m-%d %H:%M} appears twice")
        seen.add(bar.open_time)
    if problems:
        raise KlinesImportError(problems)
    if not bars:
        raise KlinesImportError([f"{path.name}: no rows"])
    return bars


def _batches(items: list[ParsedBar]) -> Iterator[list[ParsedBar]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def klines_import(
    *,
    path: Path,
    symbol: str,
    interval: str,
    progress: Callable[[Iterable[list[ParsedBar]], int], Iterable[list[ParsedBar]]] | None = None,
) -> int:
    """Import the file's bars for ``symbol`` (re-importing updates the same bars); return the
    number of bars written. All or nothing: one transaction for the whole file."""
    bars = parse_file(path, interval=interval)
    batches: Iterable[list[ParsedBar]] = _batches(bars)
    if progress is not None:
        batches = progress(batches, len(bars))
    with transaction.atomic():
        for batch in batches:
            MarketBar.objects.bulk_create(
                [
                    MarketBar(
                        symbol=symbol,
                        interval=interval,
                        open_time=b.open_time,
                        close_time=b.close_time,
                        open=b.open,
                        high=b.high,
                        low=b.low,
                        close=b.close,
                        volume=b.volume,
                        quote_volume=b.quote_volume,
                        trades=b.trades,
                    )
                    for b in batch
                ],
                update_conflicts=True,
                unique_fields=["symbol", "interval", "open_time"],
                update_fields=[
                    "close_time",
                    "open",
                    "high",
                    "low",
                    "close",
                    "volume",
                    "quote_volume",
                    "trades",
                ],
            )
    return len(bars)
