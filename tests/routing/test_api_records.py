"""Orders, fills and signals through the API: cursor pages newest first, the filters, and the
CSV exports checked row by row against the database."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from routing.models import Fill, Order, Signal

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def records() -> list[Fill]:
    """Six filled orders: three symbols' worth of two sources, a minute apart."""
    fills = []
    for n in range(6):
        at = T0 + timedelta(minutes=n)
        symbol = ("BTCUSDT", "ETHUSDT")[n % 2]
        source = ("momentum", "my_model", "mean_reversion")[n % 3]
        signal = Signal.objects.create(
            created_at=at, source=source, symbol=symbol, side="BUY", strength=Decimal("0.5")
        )
        order = Order.objects.create(
            client_order_id=f"ts-{n}",
            signal=signal,
            symbol=symbol,
            side="BUY",
            type=Order.Type.MARKET,
            quantity=Decimal("0.010"),
            status=Order.Status.FILLED,
            filled_quantity=Decimal("0.010"),
            decided_at=at,
        )
        fills.append(
            Fill.objects.create(
                order=order,
                venue_trade_id=f"t-{n}",
                symbol=symbol,
                side="BUY",
                quantity=Decimal("0.010"),
                price=Decimal("61000.5") + n,
                fee=Decimal("0.30500250"),
                signal=signal,
                filled_at=at + timedelta(seconds=1),
            )
        )
    return fills


@pytest.fixture
def viewer(viewer_user: User) -> Client:
    # A fresh Django client: this folder's `client` fixture is python-binance's.
    browser = Client()
    browser.force_login(viewer_user)
    return browser


def test_orders_come_in_cursor_pages_newest_first(viewer: Client, records: list[Fill]) -> None:
    first = viewer.get("/api/v1/orders/?page_size=4").json()
    assert [o["client_order_id"] for o in first["results"]] == ["ts-5", "ts-4", "ts-3", "ts-2"]
    assert first["previous"] is None
    second = viewer.get(first["next"]).json()
    assert [o["client_order_id"] for o in second["results"]] == ["ts-1", "ts-0"]
    assert second["next"] is None
    order = first["results"][0]
    assert order["source"] == "mean_reversion"
    assert order["quantity"] == "0.01000000"  # exact decimals as strings


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("symbol=BTCUSDT", ["t-4", "t-2", "t-0"]),
        ("source=my_model", ["t-4", "t-1"]),
        ("symbol=ETHUSDT&source=momentum", ["t-3"]),
        ("since=2026-05-04T12:03:00Z", ["t-5", "t-4", "t-3"]),
        ("since=2026-05-04T12:01:00Z&until=2026-05-04T12:03:00Z", ["t-2", "t-1"]),
    ],
)
def test_fills_are_filtered(
    viewer: Client, records: list[Fill], query: str, expected: list[str]
) -> None:
    answer = viewer.get(f"/api/v1/fills/?{query}")
    assert answer.status_code == 200
    assert [f["venue_trade_id"] for f in answer.json()["results"]] == expected


def test_a_malformed_time_filter_is_a_400(viewer: Client, records: list[Fill]) -> None:
    answer = viewer.get("/api/v1/fills/?since=yesterday")
    assert answer.status_code == 400
    assert "since" in answer.json()


def test_signals_are_listed_and_filtered(viewer: Client, records: list[Fill]) -> None:
    answer = viewer.get("/api/v1/signals/?source=momentum").json()
    assert [s["source"] for s in answer["results"]] == ["momentum", "momentum"]


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def streamed(answer: Any) -> str:
    return b"".join(answer.streaming_content).decode()


def test_the_fills_export_holds_every_selected_fill_exactly(
    viewer: Client, records: list[Fill]
) -> None:
    answer = viewer.get("/api/v1/fills/export.csv?symbol=ETHUSDT")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "text/csv"
    assert 'filename="fills.csv"' in answer["Content-Disposition"]
    rows = parse_csv(streamed(answer))
    expected = Fill.objects.filter(symbol="ETHUSDT").order_by("-id")
    assert [row["venue_trade_id"] for row in rows] == [f.venue_trade_id for f in expected]
    for row, fill in zip(rows, expected, strict=True):
        assert Decimal(row["price"]) == fill.price
        assert Decimal(row["fee"]) == fill.fee
        assert row["order"] == fill.order.client_order_id
        assert row["source"] == fill.signal.source  # type: ignore[union-attr]
        assert datetime.fromisoformat(row["filled_at"]) == fill.filled_at


def test_the_orders_export_follows_the_filters(viewer: Client, records: list[Fill]) -> None:
    rows = parse_csv(streamed(viewer.get("/api/v1/orders/export.csv?source=my_model")))
    assert [row["client_order_id"] for row in rows] == ["ts-4", "ts-1"]
    assert {row["status"] for row in rows} == {"filled"}


def test_time_filters_in_any_offset_compare_in_utc(viewer: Client, records: list[Fill]) -> None:
    # 12:03 UTC written as 21:03 at +09:00, and an offset PostgreSQL could not store
    answer = viewer.get("/api/v1/fills/", {"since": "2026-05-04T21:03:00+09:00"})
    assert [f["venue_trade_id"] for f in answer.json()["results"]] == ["t-5", "t-4", "t-3"]
    odd = viewer.get("/api/v1/fills/", {"since": "2026-05-04T12:00:00-16:44"})
    assert odd.status_code == 200
    out_of_range = viewer.get("/api/v1/fills/", {"since": "0001-01-01T00:00:00+15:00"})
    assert out_of_range.status_code == 400
