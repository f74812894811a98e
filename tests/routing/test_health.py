"""Router health from the books: cached aggregates counted once, refreshed incrementally,
equal to a full recompute, and what the pages and their JSON endpoints show."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from risk.limits import Side
from risk.models import RiskLimit
from risk.services import risk_halt, risk_state_load
from routing.analytics import Window, cells_from_fills, group_metrics
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record
from routing.dashboard import positions_with_stops
from routing.health import (
    DAY,
    WINDOW_KEYS,
    fill_arrays,
    metric_display,
    router_health_curves,
    router_health_rebuild,
    router_health_refresh,
    router_health_summary,
)
from routing.models import FillAttribution, HealthCell, Order, Signal
from routing.orders import order_create, order_send
from routing.venues import BinanceFutures

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


def trade(
    venue: BinanceFutures, server: BinanceTestServer, source: str, side: Side, qty: str, px: str
) -> Order:
    server.set_price("BTCUSDT", Decimal(px))
    signal = Signal.objects.create(
        created_at=datetime.now(UTC),
        source=source,
        symbol="BTCUSDT",
        side=str(side),
        strength=Decimal(1),
        decision_price=Decimal(px) - Decimal(5),
    )
    order = order_create(
        symbol="BTCUSDT",
        side=side,
        quantity=Decimal(qty),
        signal=signal,
        decision_price=signal.decision_price,
    )
    return order_send(order=order, venue=venue)


def scenario(venue: BinanceFutures, server: BinanceTestServer) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, server, "momentum", Side.BUY, "0.050", "60000")
    trade(venue, server, "mean_reversion", Side.SELL, "0.010", "60100")
    trade(venue, server, "momentum", Side.SELL, "0.020", "60900")  # a win
    trade(venue, server, "mean_reversion", Side.BUY, "0.010", "60500")  # a loss
    trade(venue, server, "momentum", Side.SELL, "0.020", "59800")  # a loss; 0.010 stays open
    fills_record(venue=venue, symbol="BTCUSDT")


def tables(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: payload[key] for key in ("by_source", "by_symbol", "overall")}


def test_each_fill_and_order_is_counted_once_and_the_metrics_follow_the_fills(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    scenario(venue, server)

    first = router_health_refresh()
    cells = {c.pk: list(c.values) for c in HealthCell.objects.all()}
    again = router_health_refresh()

    assert first.ran
    assert first.ingested == FillAttribution.objects.count() + Order.objects.count()
    assert again.ingested == 0
    assert {c.pk: list(c.values) for c in HealthCell.objects.all()} == cells
    summary = router_health_summary("24h")
    assert summary is not None
    rows = {row["name"]: row["values"] for row in summary["by_source"]}
    # independent reference straight from the attributed fills (Decimal, then float)
    for source in ("momentum", "mean_reversion"):
        shares = list(FillAttribution.objects.filter(source=source))
        closing = [a.realized_pnl - a.fee for a in shares if a.closing]
        wins = [p for p in closing if p > 0]
        losses = [p for p in closing if p <= 0]
        net = sum(a.realized_pnl - a.fee for a in shares)
        assert rows[source]["realized_pnl"] == pytest.approx(float(net))
        assert rows[source]["trades"] == len(closing)
        assert rows[source]["hit_rate"] == pytest.approx(len(wins) / len(closing))
        assert rows[source]["fees"] == pytest.approx(float(sum(a.fee for a in shares)))
        if losses:
            assert rows[source]["avg_loss"] == pytest.approx(float(sum(losses)) / len(losses))
    assert rows["momentum"]["hit_rate"] == pytest.approx(0.5)
    assert rows["mean_reversion"]["hit_rate"] == 0
    # slippage against the decision price (5 below every fill price): buys paid 5 more,
    # sells got 5 more
    shares = list(FillAttribution.objects.filter(source="momentum"))
    notional = [float(a.quantity * a.price) for a in shares]
    bps = [
        float((a.price - a.decision_price) / a.decision_price * 10_000)
        * (1 if a.side == "BUY" else -1)
        for a in shares
    ]
    assert rows["momentum"]["slippage_bps"] == pytest.approx(
        sum(b * n for b, n in zip(bps, notional, strict=True)) / sum(notional)
    )
    assert rows["momentum"]["latency_ms"] is not None
    assert rows["momentum"]["latency_ms"] >= 0
    assert rows["momentum"]["orders"] == 3
    assert rows["momentum"]["reject_rate"] == 0
    overall = summary["overall"]["values"]
    assert overall["realized_pnl"] == pytest.approx(sum(r["realized_pnl"] for r in rows.values()))
    assert summary["overall"]["display"]["realized_pnl"] == metric_display(
        "realized_pnl", overall["realized_pnl"]
    )


def test_incremental_refreshes_equal_a_full_recompute(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, server, "momentum", Side.BUY, "0.050", "60000")
    fills_record(venue=venue, symbol="BTCUSDT")
    router_health_refresh()
    trade(venue, server, "momentum", Side.SELL, "0.020", "60900")
    trade(venue, server, "mean_reversion", Side.SELL, "0.010", "60100")
    fills_record(venue=venue, symbol="BTCUSDT")
    router_health_refresh()
    trade(venue, server, "mean_reversion", Side.BUY, "0.010", "60500")
    fills_record(venue=venue, symbol="BTCUSDT")
    now = datetime.now(UTC)
    incremental = router_health_refresh(now=now)
    assert incremental.ran
    stepwise = {key: tables(router_health_summary(key) or {}) for key in WINDOW_KEYS}

    router_health_rebuild(now=now)
    rebuilt = {key: tables(router_health_summary(key) or {}) for key in WINDOW_KEYS}
    assert rebuilt == stepwise

    # and the analytics module run directly over every attributed fill agrees
    arrays = fill_arrays(list(FillAttribution.objects.all()))
    end = (int(now.timestamp()) // DAY + 1) * DAY
    frame = group_metrics(
        cells_from_fills(arrays, period_seconds=DAY),
        by="source",
        window=Window(start=end - 30 * DAY, end=end, period_seconds=DAY),
        capital=(router_health_summary("30d") or {})["capital"],
    )
    for row in rebuilt["30d"]["by_source"]:
        for column in ("realized_pnl", "trades", "hit_rate", "sharpe", "max_drawdown"):
            expected = float(frame.loc[row["name"], column])
            got = row["values"][column]
            assert (got is None and math.isnan(expected)) or got == pytest.approx(expected)


# --- Pages and endpoints -------------------------------------------------------------------


@pytest.fixture
def refreshed(server: BinanceTestServer, venue: BinanceFutures) -> None:
    scenario(venue, server)
    router_health_refresh()


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.usefixtures("refreshed")
def test_the_router_health_page_renders_the_cached_summary_without_raw_rows(
    viewer_user: User,
) -> None:
    client = logged_in(viewer_user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/router-health/?window=24h")
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert '"routing_fill"' not in sql
    assert "routing_fill " not in sql
    assert "routing_healthcell" not in sql
    html = response.content.decode()
    summary = router_health_summary("24h") or {}
    for row in summary["by_source"]:
        for column in ("realized_pnl", "hit_rate", "sharpe", "max_drawdown", "trades"):
            cell = (
                f'<tr data-name="{row["name"]}">.*?<td class="num" data-field="{column}">'
                f"{re.escape(row['display'][column])}</td>"
            )
            assert re.search(cell, html, re.S), (row["name"], column)


@pytest.mark.usefixtures("refreshed")
def test_the_endpoints_return_what_the_selectors_give(viewer_user: User) -> None:
    client = logged_in(viewer_user)
    summary = router_health_summary("7d") or {}

    tables_json = client.get("/api/v1/router-health/7d/").json()
    curves_json = client.get("/api/v1/router-health/7d/curves/").json()

    assert tables(tables_json) == tables(summary)
    assert curves_json["source"] == (router_health_curves("7d") or {})["source"]
    assert set(curves_json["source"]) == {"momentum", "mean_reversion"}
    assert client.get("/api/v1/nav/curve/").status_code == 200
    positions = client.get("/api/v1/positions/").json()
    assert positions == positions_with_stops()
    assert [p["symbol"] for p in positions] == ["BTCUSDT"]
    assert len(client.get("/api/v1/fills/recent/").json()) == FillAttribution.objects.count()
    bad = client.get("/api/v1/router-health/1y/")
    assert bad.status_code == 400
    assert "window" in bad.json()
    assert Client().get("/api/v1/router-health/7d/").status_code in {401, 403}


def test_before_the_first_refresh_pages_say_so_and_endpoints_answer_404(
    viewer_user: User,
) -> None:
    client = logged_in(viewer_user)
    assert client.get("/api/v1/router-health/24h/").status_code == 404
    page = client.get("/router-health/").content.decode()
    assert "Nothing measured yet" in page
    assert "No fill yet" in page


# --- Controls --------------------------------------------------------------------------------


def test_operators_switch_the_kill_switch_with_a_reason_and_it_is_audited(
    operator_user: User,
) -> None:
    client = logged_in(operator_user)
    page = client.get("/").content.decode()
    assert 'id="kill-switch-form"' in page
    assert 'id="flatten-form"' in page

    refused = client.post("/controls/kill-switch/", {"on": "1", "confirm": "yes", "reason": " "})
    assert refused.status_code == 302
    assert not RiskLimit.objects.get(symbol="").kill_switch

    unconfirmed = client.post("/controls/kill-switch/", {"on": "1", "reason": "news"})
    assert unconfirmed.status_code == 302
    assert not RiskLimit.objects.get(symbol="").kill_switch

    client.post("/controls/kill-switch/", {"on": "1", "confirm": "yes", "reason": "CPI print"})

    limits = RiskLimit.objects.get(symbol="")
    assert limits.kill_switch
    assert limits.history.first().history_change_reason == "olive (dashboard): CPI print"
    entry = LogEntry.objects.get()
    assert entry.user == operator_user
    assert "CPI print" in entry.change_message
    page = client.get("/").content.decode()
    assert "Kill switch is on" in page
    assert 'id="halt-banner" class="banner" role="alert">' in page


def test_viewers_have_no_controls_and_cannot_post_them(viewer_user: User) -> None:
    client = logged_in(viewer_user)
    page = client.get("/").content.decode()
    assert "kill-switch-form" not in page
    assert "flatten-form" not in page
    response = client.post(
        "/controls/kill-switch/", {"on": "1", "confirm": "yes", "reason": "let me"}
    )
    assert response.status_code == 403
    assert client.post("/controls/flatten/", {"confirm": "yes", "reason": "x"}).status_code == 403
    assert not RiskLimit.objects.get(symbol="").kill_switch


def test_every_tab_shows_the_halt_banner_with_its_reason(viewer_user: User) -> None:
    risk_state_load(initial_nav=Decimal("1000"))
    risk_halt(reason="daily loss limit breached", actor="risk")
    client = logged_in(viewer_user)
    for path in ("/", "/router-health/", "/risk/", "/ml-insights/", "/doctor/"):
        page = client.get(path).content.decode()
        assert "Trading is halted" in page, path
        assert "daily loss limit breached" in page, path


@pytest.fixture
def eager_celery() -> Any:
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = previous


@pytest.mark.usefixtures("eager_celery")
def test_an_operators_flatten_closes_the_paper_account(operator_user: User) -> None:
    """The dashboard's flatten runs the real task (eagerly here) against the paper venue."""
    from routing.runtime import venue_session

    risk_state_load(initial_nav=Decimal("100000"))
    now = datetime.now(UTC) - timedelta(seconds=1)
    with venue_session(now_ms=int(now.timestamp() * 1000)) as venue:
        order = order_create(symbol="BTCUSDT", side=Side.BUY, quantity=Decimal("0.01"))
        order_send(order=order, venue=venue)
        assert venue.positions().get("BTCUSDT") == Decimal("0.01")

    client = logged_in(operator_user)
    client.post("/controls/flatten/", {"confirm": "yes", "reason": "end of test"})

    with venue_session() as venue:
        assert venue.positions().get("BTCUSDT", Decimal(0)) == 0
    flatten_orders = Order.objects.filter(purpose=Order.Purpose.FLATTEN)
    assert flatten_orders.count() == 1
    assert "end of test" in LogEntry.objects.get().change_message


def test_a_refresh_asked_for_while_one_runs_is_not_lost() -> None:
    from tradingsite.locks import single_flight
    from tradingsite.redisconn import redis_client, redis_key

    again = redis_key("router-health", "again")
    redis_client().delete(again)
    with single_flight("router-health-refresh", ttl_seconds=30) as held:
        assert held.acquired
        assert not router_health_refresh().ran
    assert redis_client().exists(again)
    assert router_health_refresh().ran
    assert not redis_client().exists(again)


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("realized_pnl", -1234.5, "-1,234.50"),
        ("realized_pnl", -0.001, "0.00"),
        ("max_drawdown", -0.0123, "-1.23%"),
        ("max_drawdown", -0.0000046, "0.00%"),
        ("hit_rate", 2 / 3, "66.7%"),
        ("trades", 3.0, "3"),
        ("latency_ms", 9.4, "9"),
        ("sharpe", float("nan"), "\N{EN DASH}"),
        ("sortino", None, "\N{EN DASH}"),
    ],
)
def test_every_number_is_shown_one_way(name: str, value: float | None, shown: str) -> None:
    assert metric_display(name, value) == shown
