"""Benchmark: the Router Health page over a year of fills in PostgreSQL, and the live path.

Issue 5, item 7. Not a test: ``make bench`` calls ``run()`` with Django set up.

1. Server time of the Router Health page (``/router-health/?window=all``, a logged-in viewer,
   Django's test client: the whole middleware stack, session, context processors, template)
   with ``BENCH_HEALTH_FILLS`` fills (default 100,000; 1,000,000 for the full-size run) of 20
   symbols x 10 signal sources over a year in PostgreSQL, their orders and attributions, the
   router health cells built from them and the summaries refreshed; against a trivial Django
   view (``/healthz``) through the same stack. Goal: at most 3x. The page reads the refreshed
   summary (its size set by the sources and symbols, not by the fills) and the 20 newest fills
   by an index, so the count mostly costs the setup: loading 1,000,000 took over two minutes.
   The rows are loaded with COPY (the tables analyzed after it, as autovacuum would) and the
   cells built by ``routing.analytics`` over the same arrays (the refresh itself is timed and
   reported in the notes).
2. Fill -> websocket-received latency: a fill booked by ``fills_record`` on a paper venue,
   from its commit to the moment a websocket client of the real ASGI server (daphne,
   channels-redis) receives the ``routing.fill`` push; against a bare channels-redis
   ``group_send`` to the same group and client. p50 and p99; goal: p99 at most 2x.

Needs PostgreSQL for (1): with another database it says so and skips that row (``make bench``
points DATABASE_URL at PostgreSQL). Every row written is deleted at the end and the
summaries are recomputed from what is left.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.run import env_int

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILLS = 100_000
SYMBOLS = tuple(f"BENCHH{n:02d}USDT" for n in range(20))
SOURCES = tuple(f"bench_signal_{n}" for n in range(10))
SPAN_DAYS = 365
SEED = 20241105
PAGE_REQUESTS = 40
PROBE_REQUESTS = 10  # untimed requests after the medians: where the page's time goes
LATENCY_SAMPLES = 200
GOAL_PAGE_RATIO = 3.0
GOAL_LATENCY_RATIO = 2.0
T_END = datetime(2026, 11, 1, tzinfo=UTC)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


# --- 1. the page over a million fills ------------------------------------------------------


def _fills_count() -> int:
    """Fills to load, from ``BENCH_HEALTH_FILLS`` (default ``DEFAULT_FILLS``)."""
    return env_int("BENCH_HEALTH_FILLS", DEFAULT_FILLS)


def _synthetic(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    end = int(T_END.timestamp())
    at = np.sort(rng.integers(end - SPAN_DAYS * 86_400, end, size=count))
    symbol = rng.integers(0, len(SYMBOLS), size=count)
    source = rng.integers(0, len(SOURCES), size=count)
    price = np.round(100 * np.exp(rng.normal(0, 0.2, size=count)) * (1 + symbol), 2)
    quantity = np.round(rng.uniform(0.01, 2.0, size=count), 3)
    closing = rng.random(count) < 0.5
    pnl = np.where(closing, np.round(rng.normal(0.5, 20.0, size=count), 6), 0.0)
    fee = np.round(price * quantity * 0.0004, 8)
    side = rng.random(count) < 0.5
    slip = rng.normal(1.0, 3.0, size=count)
    return {
        "at": at,
        "symbol": symbol,
        "source": source,
        "price": price,
        "quantity": quantity,
        "closing": closing,
        "pnl": pnl,
        "fee": fee,
        "buy": side,
        "decision": np.round(price / (1 + np.where(side, slip, -slip) / 10_000), 8),
        "latency_ms": rng.gamma(2.0, 15.0, size=count),
    }


def _copy(table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> None:
    from django.db import connection

    connection.ensure_connection()
    raw: Any = connection.connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _load(data: dict[str, np.ndarray]) -> None:
    """Orders, fills and their attributions, counted into the cells already."""
    from django.db import connection, transaction

    from routing.models import FillAttribution, Order

    moments = [datetime.fromtimestamp(int(t), tz=UTC) for t in data["at"]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM routing_order")
        first_order = cursor.fetchone()[0] + 1
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM routing_fill")
        first_fill = cursor.fetchone()[0] + 1
    n = len(moments)
    sides = ["BUY" if b else "SELL" for b in data["buy"]]
    quantities = [f"{q:.3f}" for q in data["quantity"]]
    prices = [f"{p:.2f}" for p in data["price"]]
    with transaction.atomic():
        _copy(
            "routing_order",
            (
                "id",
                "client_order_id",
                "venue_order_id",
                "symbol",
                "side",
                "type",
                "purpose",
                "quantity",
                "reduce_only",
                "status",
                "filled_quantity",
                "decision_price",
                "attempts",
                "decided_at",
                "submitted_at",
                "acked_at",
                "last_error",
                "health_counted",
                "updated_at",
            ),
            (
                (
                    first_order + i,
                    f"bench-{first_order + i}",
                    str(first_order + i),
                    SYMBOLS[data["symbol"][i]],
                    sides[i],
                    "MARKET",
                    "entry",
                    quantities[i],
                    False,
                    "filled",
                    quantities[i],
                    f"{data['decision'][i]:.8f}",
                    1,
                    moments[i],
                    moments[i],
                    moments[i] + timedelta(milliseconds=float(data["latency_ms"][i])),
                    "",
                    True,
                    moments[i],
                )
                for i in range(n)
            ),
        )
        _copy(
            "routing_fill",
            (
                "id",
                "order_id",
                "venue_trade_id",
                "symbol",
                "side",
                "quantity",
                "price",
                "fee",
                "realized_pnl",
                "filled_at",
            ),
            (
                (
                    first_fill + i,
                    first_order + i,
                    str(first_order + i),
                    SYMBOLS[data["symbol"][i]],
                    sides[i],
                    quantities[i],
                    prices[i],
                    f"{data['fee'][i]:.8f}",
                    f"{data['pnl'][i]:.6f}",
                    moments[i],
                )
                for i in range(n)
            ),
        )
        _copy(
            "routing_fillattribution",
            (
                "fill_id",
                "source",
                "symbol",
                "side",
                "quantity",
                "price",
                "fee",
                "realized_pnl",
                "closing",
                "decision_price",
                "filled_at",
                "health_counted",
            ),
            (
                (
                    first_fill + i,
                    SOURCES[data["source"][i]],
                    SYMBOLS[data["symbol"][i]],
                    sides[i],
                    quantities[i],
                    prices[i],
                    f"{data['fee'][i]:.8f}",
                    f"{data['pnl'][i]:.6f}",
                    bool(data["closing"][i]),
                    f"{data['decision'][i]:.8f}",
                    moments[i],
                    True,
                )
                for i in range(n)
            ),
        )
    assert FillAttribution.objects.filter(symbol__in=SYMBOLS).count() == n
    assert Order.objects.filter(symbol__in=SYMBOLS).count() == n
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_order, routing_fill, routing_fillattribution")


def _cells(data: dict[str, np.ndarray]) -> None:
    """The cells of the loaded rows, built by the analytics module over the same arrays."""
    from routing.analytics import (
        FillArrays,
        OrderArrays,
        cells_from_fills,
        cells_from_orders,
        cells_merged,
    )
    from routing.health import PERIODS, cells_add

    fills = FillArrays(
        at=data["at"],
        source=data["source"].astype(np.int64),
        symbol=data["symbol"].astype(np.int64),
        pnl=data["pnl"],
        fee=data["fee"],
        closing=data["closing"],
        notional=data["price"] * data["quantity"],
        slippage_bps=np.where(
            data["buy"],
            (data["price"] - data["decision"]) / data["decision"] * 10_000,
            (data["decision"] - data["price"]) / data["decision"] * 10_000,
        ),
        sources=SOURCES,
        symbols=SYMBOLS,
    )
    orders = OrderArrays(
        at=data["at"],
        source=fills.source,
        symbol=fills.symbol,
        rejected=np.zeros(len(data["at"]), dtype=bool),
        latency_ms=data["latency_ms"],
        sources=SOURCES,
        symbols=SYMBOLS,
    )
    from django.db import transaction

    for period in PERIODS:
        cells = cells_merged(
            cells_from_fills(fills, period_seconds=period),
            cells_from_orders(orders, period_seconds=period),
        )
        with transaction.atomic():
            cells_add(cells)


def _median_request(client: Any, path: str) -> float:
    times = []
    for _ in range(PAGE_REQUESTS):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times)


def _probed_requests(client: Any, path: str) -> tuple[Any, int]:
    """``PROBE_REQUESTS`` more requests of ``path``, untimed for the row, with the page's
    pieces timed and the SQL statements counted: its probe and the response's size."""
    from unittest import mock

    from django.template.response import SimpleTemplateResponse

    import routing.dashboard
    import routing.replay_dashboard
    import tradingsite.context_processors
    import tradingsite.views
    from tests.benchmarks.bench_routing import Probe

    probe = Probe()
    pieces = (
        (tradingsite.views, "router_health_page", "context"),
        (routing.dashboard, "router_health_summary", "summary read"),
        (routing.dashboard, "recent_fills", "recent fills"),
        (routing.replay_dashboard, "replay_choices", "replay choices"),
        (tradingsite.context_processors, "trading_status", "trading banner"),
        (SimpleTemplateResponse, "render", "template render"),
    )
    size = 0
    with contextlib.ExitStack() as stack:
        for owner, attribute, label in pieces:
            original = getattr(owner, attribute)
            stack.enter_context(mock.patch.object(owner, attribute, probe.wrapped(label, original)))
        stack.enter_context(probe.sql())
        for _ in range(PROBE_REQUESTS):
            with probe.phase("request"):
                response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            size = len(response.content)
    return probe, size


def _page_cause(page: Any, trivial: Any, page_size: int, trivial_size: int) -> str:
    """Where the page's time goes beyond the trivial view's, per request, from the probes."""
    n = PROBE_REQUESTS

    def ms(probe: Any, label: str) -> str:
        return f"{probe.seconds[label] / n * 1e3:.2f} ms"

    def queries(probe: Any, label: str) -> str:
        count = probe.queries[label] / n
        return f"{count:.0f} {'query' if count == 1 else 'queries'}"

    pieces = ("context", "template render")
    rest = page.seconds["request"] - sum(page.seconds[label] for label in pieces)
    seconds = {
        "view context": page.seconds["context"],
        "template render": page.seconds["template render"],
        "rest": rest,
    }
    largest = max(seconds, key=lambda label: seconds[label])
    return (
        f"Goal not met: {n} more requests of each, untimed: the page took "
        f"{ms(page, 'request')} with {page.total_queries() / n:.0f} SQL queries "
        f"({page.total_sql_seconds() / n * 1e3:.2f} ms in PostgreSQL) and {page_size:,} bytes "
        f"of HTML, the trivial view {ms(trivial, 'request')} with "
        f"{trivial.total_queries() / n:.0f} queries "
        f"({trivial.total_sql_seconds() / n * 1e3:.2f} ms) and {trivial_size:,} bytes. The "
        f"page's view context {ms(page, 'context')} (the summary read {ms(page, 'summary read')}"
        f", {queries(page, 'summary read')}; the 20 recent fills {ms(page, 'recent fills')}, "
        f"{queries(page, 'recent fills')}; the replay selector {ms(page, 'replay choices')}, "
        f"{queries(page, 'replay choices')}); the template render "
        f"{ms(page, 'template render')} ({queries(page, 'template render')} outside the "
        f"banner; of it the trading banner {ms(page, 'trading banner')}, "
        f"{queries(page, 'trading banner')}); the rest (middleware, session, user, "
        f"URL, test client) {rest / n * 1e3:.2f} ms. The largest piece, the {largest}, is "
        f"{seconds[largest] / trivial.seconds['request']:.1f}x the whole trivial request"
    )


def _cleanup() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        symbols = list(SYMBOLS)
        cursor.execute("DELETE FROM routing_fillattribution WHERE symbol = ANY(%s)", [symbols])
        cursor.execute("DELETE FROM routing_fill WHERE symbol = ANY(%s)", [symbols])
        cursor.execute("DELETE FROM routing_order WHERE symbol = ANY(%s)", [symbols])
        cursor.execute("DELETE FROM routing_healthcell WHERE symbol = ANY(%s)", [symbols])


def _page_benchmark() -> list[dict[str, Any]]:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client, override_settings

    from routing.health import router_health_refresh, router_health_summary

    if connection.vendor != "postgresql":
        print("  Router Health page over 1M fills: needs PostgreSQL (DATABASE_URL); skipped")
        return []
    fills = _fills_count()
    rng = np.random.default_rng(SEED)
    data = _synthetic(rng, fills)
    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    try:
        started = time.perf_counter()
        _load(data)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        _cells(data)
        built = time.perf_counter() - started
        started = time.perf_counter()
        router_health_refresh(now=T_END)
        refreshed = time.perf_counter() - started
        summary = router_health_summary("all")
        assert summary is not None
        assert len(summary["by_source"]) >= len(SOURCES)
        client = Client()
        client.force_login(user)
        with override_settings(ROOT_URLCONF="tests.benchmarks.bench_urls"):
            for path in ("/router-health/?window=all", "/bench/trivial/", "/healthz"):
                client.get(path)  # warm up: templates, URL resolver, connections
            page = _median_request(client, "/router-health/?window=all")
            trivial = _median_request(client, "/bench/trivial/")
            bare = _median_request(client, "/healthz")
            if page / trivial > GOAL_PAGE_RATIO:
                page_probe, page_size = _probed_requests(client, "/router-health/?window=all")
                trivial_probe, trivial_size = _probed_requests(client, "/bench/trivial/")
                cause = " " + _page_cause(page_probe, trivial_probe, page_size, trivial_size) + "."
            else:
                cause = ""
    finally:
        _cleanup()
        user.delete()
        router_health_refresh()
    ratio = page / trivial
    return [
        {
            "name": (
                f"Router Health page (window all), {fills:,} fills of {len(SYMBOLS)} symbols x "
                f"{len(SOURCES)} sources in PostgreSQL, median of {PAGE_REQUESTS}"
            ),
            "seconds": page,
            "baseline_name": (
                "a trivial login-required Django view (session + user, a constant body), same "
                "stack, same client"
            ),
            "baseline_seconds": trivial,
            "ratio": ratio,
            "goal": f"≤ {GOAL_PAGE_RATIO:g}x",
            "met": ratio <= GOAL_PAGE_RATIO,
            "note": (
                f"Router Health page {page * 1e3:.2f} ms is {page / bare:.1f}x /healthz "
                f"({bare * 1e3:.2f} ms, no session at all). "
                f"Router Health over {fills:,} fills (BENCH_HEALTH_FILLS; the full-size run "
                "takes 1,000,000 and over two minutes to load them): COPY of orders, fills and "
                "attributions "
                f"{loaded:.1f} s, cells built {built:.1f} s, one full refresh of every window's "
                f"summary from the cells {refreshed:.2f} s (beat runs it every minute and after "
                f"fills; the page only reads its result).{cause}"
            ),
        }
    ]


# --- 2. fill -> websocket ------------------------------------------------------------------


@contextmanager
def _daphne_process() -> Iterator[tuple[str, Any]]:
    """The real ASGI server on the benchmark's database and Redis (the suite's helpers): its
    host:port and its ``tests.conftest.Process`` (pid, log)."""
    from django.conf import settings

    from tests.conftest import Process, child_env, daphne_command, free_port, wait_for

    port = free_port()
    process = Process("bench-daphne", daphne_command(port), child_env(REDIS_URL=settings.REDIS_URL))

    def listening() -> bool:
        process.assert_running()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=60, what="daphne to listen")
        yield f"127.0.0.1:{port}", process
    finally:
        process.stop()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Timeout)\w*: (.+)$")


def daphne_errors(log: Path) -> str:
    """What went wrong inside daphne, from its log: the final exception of each error it
    logged (a 500, a consumer that died), counted; "" when there was none."""
    counts: dict[str, int] = {}
    cause: str | None = None

    def flush() -> None:
        if cause is not None:
            counts[cause] = counts.get(cause, 0) + 1

    for line in log.read_text().splitlines() if log.exists() else []:
        if re.match(r"^\d{4}-\d\d-\d\d .* ERROR ", line):
            flush()
            cause = "(no exception logged)"
        elif cause is not None and (match := _EXCEPTION_LINE.match(line)):
            cause = match.group(1).strip()[:200]
    flush()
    return "; ".join(
        f"{count} x {text!r}" for text, count in sorted(counts.items(), key=lambda i: -i[1])
    )


@contextmanager
def _daphne() -> Iterator[str]:
    with _daphne_process() as (host, _process):
        yield host


def _stamp(into: list[float]) -> None:
    into.append(time.perf_counter())


def _receive(ws: Any, event: str) -> float:
    while True:
        message = json.loads(ws.recv(timeout=30))
        if message["event"] == event:
            return time.perf_counter()


def _latency_benchmark() -> list[dict[str, Any]]:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.test import Client
    from websockets.sync.client import connect
    from websockets.typing import Origin

    from risk.limits import Side
    from risk.services import risk_state_load
    from routing.books import fills_record
    from routing.executor import TickContext, step_instruments
    from routing.models import FillAttribution, Instrument, Order, Position, SignalPosition
    from routing.orders import order_create, order_send
    from routing.paper import PaperSymbol, paper_venue_for
    from tradingsite.live import DASHBOARD_GROUP

    symbol = "BENCHWSUSDT"
    clock_now = [int(T_END.timestamp() * 1000)]
    venue = paper_venue_for(
        (symbol,),
        seed=SEED,
        clock_ms=lambda: clock_now[0],
        name="bench-latency",
        overrides={symbol: PaperSymbol(Decimal(100), Decimal("0.01"), Decimal("0.001"))},
        starting_wallet=Decimal(1_000_000),
        leverage=Decimal(10),
    )
    moment = datetime.fromtimestamp(clock_now[0] / 1000, tz=UTC)
    step_instruments(TickContext(clock=lambda: moment, venue=venue, symbols=(symbol,)))
    risk_state_load(initial_nav=Decimal(1_000_000), at=moment)
    user, _ = User.objects.get_or_create(username="bench-latency")
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    layer = get_channel_layer()
    pushed: list[float] = []
    bare: list[float] = []
    try:
        with (
            _daphne() as host,
            connect(
                f"ws://{host}/ws/dashboard/",
                additional_headers={"Cookie": cookie},
                origin=Origin(f"http://{host}"),
                open_timeout=30,
            ) as ws,
        ):
            assert json.loads(ws.recv(timeout=30))["event"] == "snapshot"
            for n in range(LATENCY_SAMPLES):
                side = Side.BUY if n % 2 == 0 else Side.SELL
                order = order_create(symbol=symbol, side=side, quantity=Decimal("0.1"))
                order_send(order=order, venue=venue)
                clock_now[0] += 1000
                committed: list[float] = []
                with transaction.atomic():
                    transaction.on_commit(partial(_stamp, committed))
                    assert len(fills_record(venue=venue, symbol=symbol)) == 1
                pushed.append(_receive(ws, "routing.fill") - committed[0])

                started = time.perf_counter()
                async_to_sync(layer.group_send)(
                    DASHBOARD_GROUP,
                    {"type": "routing.fill", "seq": 0, "data": {"bench": n}},
                )
                bare.append(_receive(ws, "routing.fill") - started)
    finally:
        FillAttribution.objects.filter(symbol=symbol).delete()
        from routing.models import Fill

        Fill.objects.filter(symbol=symbol).delete()
        Order.objects.filter(symbol=symbol).delete()
        Position.objects.filter(symbol=symbol).delete()
        SignalPosition.objects.filter(symbol=symbol).delete()
        Instrument.objects.filter(symbol=symbol).delete()
        user.delete()
    p50, p99 = _percentile(pushed, 50), _percentile(pushed, 99)
    b50, b99 = _percentile(bare, 50), _percentile(bare, 99)
    ratio = p99 / b99
    return [
        {
            "name": (
                f"fill -> websocket received (commit of fills_record to the routing.fill push "
                f"at a daphne client), p99 of {LATENCY_SAMPLES} (p50 {p50 * 1e3:.2f} ms)"
            ),
            "seconds": p99,
            "baseline_name": (
                f"bare channels-redis group_send to the same client, p99 (p50 {b50 * 1e3:.2f} ms)"
            ),
            "baseline_seconds": b99,
            "ratio": ratio,
            "goal": f"p99 ≤ {GOAL_LATENCY_RATIO:g}x",
            "met": ratio <= GOAL_LATENCY_RATIO,
        }
    ]


def run() -> list[dict[str, Any]]:
    from channels.layers import channel_layers

    from tests.benchmarks.bench_routing import _live_pushes

    with _live_pushes():
        channel_layers.backends.clear()  # built for the Redis of this block
        try:
            return _page_benchmark() + _latency_benchmark()
        finally:
            channel_layers.backends.clear()


if __name__ == "__main__":
    from tests.benchmarks.run import _setup_django

    _setup_django()
    for row in run():
        print(row)
