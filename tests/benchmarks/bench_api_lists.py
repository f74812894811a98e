"""Benchmark: a list endpoint at 100,000 rows with cursor pagination (issue 8, item 6).

Not a test: ``make bench`` calls ``run()`` with Django set up (PostgreSQL). 100,000 fills (and
their orders) are stored, then a logged-in viewer walks ``/api/v1/fills/?page_size=100`` page
by page through the cursor (``next``), PAGES pages, through Django's test client (the whole
stack: middleware, session, permission, filters, pagination, serializer, JSON). Baseline, in
the same run: the same page's query run directly through the ORM (the 101 newest fills below
the cursor, with their order and signal) and turned into a list. p50 and p95 per page.
Every row written is deleted at the end.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

ROWS = 100_000
PAGES = 100
PAGE = 100
SYMBOL = "BENCHAPIUSDT"


def fills_store(*, symbol: str, rows: int, prefix: str, start: datetime) -> None:
    """``rows`` filled market orders of ``symbol`` and one fill each, one a second from
    ``start``: the rows the ORM would write (the models' defaults), generated inside
    PostgreSQL by one INSERT ... SELECT per table (a bulk_create of 100,000 orders and fills
    took a minute; this takes seconds). Ids ascend with the time, as booking them would."""
    from django.db import connection, transaction

    params: dict[str, Any] = {"symbol": symbol, "rows": rows, "prefix": prefix, "start": start}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO routing_order (
                client_order_id, venue_order_id, symbol, side, type, purpose, quantity,
                reduce_only, status, filled_quantity, attempts, decided_at, last_error,
                health_counted, updated_at)
            SELECT %(prefix)s || n, '', %(symbol)s, 'BUY', 'MARKET', 'entry', 0.010, false,
                'filled', 0.010, 0, %(start)s + n * interval '1 second', '', false, now()
            FROM generate_series(0, %(rows)s - 1) AS n
            ORDER BY n
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO routing_fill (
                order_id, venue_trade_id, symbol, side, quantity, price, fee, realized_pnl,
                filled_at)
            SELECT o.id, o.client_order_id, %(symbol)s, 'BUY', 0.010, 60000 + n %% 1000, 0.3, 0,
                o.decided_at + interval '200 milliseconds'
            FROM generate_series(0, %(rows)s - 1) AS n
            JOIN routing_order AS o ON o.client_order_id = %(prefix)s || n
            ORDER BY n
            """,
            params,
        )
    # Fresh statistics, as autovacuum keeps them on a live table: planned on a table whose
    # statistics predate the rows, the page's query walked the whole primary key (0.3 s).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_order, routing_fill")


def fills_delete(symbol: str) -> None:
    """What ``fills_store`` wrote (nothing else refers to those rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM routing_fill WHERE symbol = %s", [symbol])
        cursor.execute("DELETE FROM routing_order WHERE symbol = %s", [symbol])


def _store() -> None:
    fills_store(
        symbol=SYMBOL, rows=ROWS, prefix="bench-api-", start=datetime(2026, 1, 1, tzinfo=UTC)
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    array = np.array(values)
    return float(np.percentile(array, 50)), float(np.percentile(array, 95))


def run() -> list[dict[str, Any]]:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from routing.models import Fill
    from routing.records import FillFilter

    viewer = User.objects.create_user("bench-api-viewer", password="a-long-secret-bench")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    try:
        _store()
        client = Client()
        client.force_login(viewer)
        first = f"/api/v1/fills/?symbol={SYMBOL}&page_size={PAGE}"
        client.get(first)  # warm-up
        url: str | None = first
        endpoint: list[float] = []
        orm: list[float] = []
        below: int | None = None
        for _ in range(PAGES):
            assert url is not None
            started = time.perf_counter()
            answer = client.get(url)
            endpoint.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"{url} answered {answer.status_code}")
            page = answer.json()
            url = page["next"]

            # The endpoint's own filter set builds the query: the same SQL, minus the stack.
            query = FillFilter(
                {"symbol": SYMBOL}, queryset=Fill.objects.select_related("signal", "order")
            ).qs
            if below is not None:
                query = query.filter(id__lt=below)
            started = time.perf_counter()
            rows = list(query.order_by("-id")[: PAGE + 1])
            orm.append(time.perf_counter() - started)
            below = rows[PAGE - 1].pk
            if [r.pk for r in rows[:PAGE]] != [f["id"] for f in page["results"]]:
                raise RuntimeError("the endpoint's page is not the ORM's page")
    finally:
        fills_delete(SYMBOL)
        viewer.delete()
    p50, p95 = _percentiles(endpoint)
    orm_p50, orm_p95 = _percentiles(orm)
    return [
        {
            "name": (
                f"GET /api/v1/fills/ (cursor pages of {PAGE}, {ROWS:,} fills, {PAGES} pages "
                "deep), p95 per page"
            ),
            "seconds": round(p95, 6),
            "baseline_name": "the same page's query through the ORM (101 rows, list()), p95",
            "baseline_seconds": round(orm_p95, 6),
            "ratio": round(p95 / orm_p95, 3),
            "goal": "(recorded)",
            "met": True,
            "note": (
                f"fills list endpoint: p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms per page "
                f"of {PAGE} over {ROWS:,} rows (the ORM query alone: p50 {orm_p50 * 1e3:.1f} "
                f"ms, p95 {orm_p95 * 1e3:.1f} ms); the rest is the stack, the serializer and "
                "JSON. Cursor pages cost the same on page 100 as on page 1."
            ),
        }
    ]
