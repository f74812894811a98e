from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from routing.models import MarketBar

pytestmark = pytest.mark.django_db

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def rows(count: int, *, micro: bool = False, start: datetime = T0) -> list[str]:
    scale = 1_000_000 if micro else 1000
    out = []
    for i in range(count):
        opened = start + timedelta(minutes=i)
        open_units = int(opened.timestamp()) * scale
        close_units = open_units + 60 * scale - (1 if not micro else 1000)
        o = Decimal("60000") + i
        prices = f"{o},{o + 5},{o - 5},{o + 1}"
        out.append(f"{open_units},{prices},12.5,{close_units},750000.1,42,6.1,366000.2,0")
    return out


def write(tmp_path: Path, lines: list[str], name: str = "BTCUSDT-1m.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def import_file(path: Path, interval: str = "1m") -> str:
    out = StringIO()
    call_command(
        "import_klines",
        str(path),
        "--symbol",
        "btcusdt",
        "--interval",
        interval,
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue()


@pytest.mark.parametrize(
    ("lines", "form"),
    [
        (lambda: [HEADER, *rows(30)], "futures with a header, milliseconds"),
        (lambda: rows(30), "older futures without a header, milliseconds"),
        (lambda: rows(30, micro=True), "spot from 2025, microseconds"),
    ],
)
def test_every_published_form_imports_the_same_bars(
    tmp_path: Path, lines: object, form: str
) -> None:
    output = import_file(write(tmp_path, lines()))  # type: ignore[operator]

    assert "imported 30 bars of BTCUSDT" in output, form
    bars = list(MarketBar.objects.filter(symbol="BTCUSDT", interval="1m").order_by("open_time"))
    assert len(bars) == 30
    first = bars[0]
    assert first.open_time == T0
    assert first.close_time == T0 + timedelta(seconds=59, milliseconds=999)
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("60000"),
        Decimal("60005"),
        Decimal("59995"),
        Decimal("60001"),
    )
    assert (first.volume, first.trades) == (Decimal("12.5"), 42)


def test_importing_the_same_file_again_updates_instead_of_duplicating(tmp_path: Path) -> None:
    path = write(tmp_path, rows(10))
    import_file(path)
    import_file(path)
    assert MarketBar.objects.count() == 10


def test_a_broken_file_reports_every_bad_line_and_imports_nothing(tmp_path: Path) -> None:
    lines = [HEADER, *rows(6)]
    lines[2] = lines[2].replace("60001", "not-a-price", 1)  # line 3
    cells = lines[4].split(",")
    cells[2] = "1"  # line 5: high below low
    lines[4] = ",".join(cells)
    lines.append("1,2,3")  # line 8: too few columns

    with pytest.raises(CommandError) as refused:
        import_file(write(tmp_path, lines))

    message = str(refused.value)
    assert "3 bad row(s), nothing imported" in message
    assert "line 3:" in message
    assert "line 5: inconsistent prices" in message
    assert "line 8: expected at least 11 columns" in message
    assert MarketBar.objects.count() == 0


def test_bars_of_another_interval_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not fit the interval"):
        import_file(write(tmp_path, rows(3)), interval="5m")
    assert MarketBar.objects.count() == 0


def test_an_empty_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no rows"):
        import_file(write(tmp_path, [HEADER]))
    with pytest.raises(CommandError, match="no such file"):
        import_file(tmp_path / "missing.csv")
