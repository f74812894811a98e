"""A person's view of the trading tabs in a real browser: every number on the page equals the
selector's, a fill booked during the test appears without a reload, the tables follow the
worker's refresh, and only operators get the kill switch and flatten."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from doctor.models import DoctorSnapshot
from risk.limits import Side
from risk.services import risk_halt, risk_state_load
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record, nav_record
from routing.health import router_health_refresh, router_health_summary
from routing.models import Signal
from routing.orders import order_create, order_send
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures
from tests.browser.test_dashboard_live import TABS, log_in
from tests.conftest import ARTIFACTS, Process
from tradingsite.guard import GuardContext, binance_client_for_writing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("global_limits"),
]

T = TypeVar("T")


def off_the_page_thread(work: Callable[[], T]) -> T:
    """Run ORM work in another thread: Playwright's event loop runs in this one, and Django
    refuses ORM calls beside a running loop."""

    def run() -> T:
        try:
            return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def venue(settings: Any) -> Iterator[tuple[BinanceTestServer, BinanceFutures]]:
    with BinanceTestServer(balance=Decimal("100000")) as server:
        settings.BINANCE_API_KEY = server.api_key
        settings.BINANCE_API_SECRET = server.api_secret
        context = GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
        client = binance_client_for_writing(context=context)
        yield server, BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))


def trade(
    pair: tuple[BinanceTestServer, BinanceFutures], source: str, side: Side, qty: str, px: str
) -> None:
    server, venue = pair
    server.set_price("BTCUSDT", Decimal(px))
    signal = Signal.objects.create(
        created_at=datetime.now(UTC),
        source=source,
        symbol="BTCUSDT",
        side=str(side),
        strength=Decimal(1),
        decision_price=Decimal(px),
    )
    order_send(
        order=order_create(
            symbol="BTCUSDT",
            side=side,
            quantity=Decimal(qty),
            signal=signal,
            decision_price=Decimal(px),
        ),
        venue=venue,
    )
    fills_record(venue=venue, symbol="BTCUSDT")


@pytest.fixture
def history(venue: tuple[BinanceTestServer, BinanceFutures], global_limits: Any) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    trade(venue, "momentum", Side.BUY, "0.050", "60000")
    trade(venue, "mean_reversion", Side.SELL, "0.010", "60100")
    trade(venue, "momentum", Side.SELL, "0.020", "60900")
    trade(venue, "mean_reversion", Side.BUY, "0.010", "60500")
    nav_record(venue=venue[1], at=datetime.now(UTC))
    router_health_refresh()


def doctor_history() -> None:
    """Two cached doctor snapshots in the last hour: confidence 1, then 0.5."""
    now = timezone.now()
    DoctorSnapshot.objects.bulk_create(
        DoctorSnapshot(taken_at=now - timedelta(minutes=m), status=s, confidence=c, checks=[])
        for m, s, c in ((20, "ok", 1.0), (10, "warn", 0.5))
    )


def cell(page: Page, table: str, name: str, field: str) -> Any:
    return page.locator(f"#{table} tr[data-name='{name}'] td[data-field='{field}']")


def assert_tables_match(page: Page, summary: dict[str, Any]) -> None:
    for row in summary["by_source"]:
        for field in (
            "realized_pnl",
            "unrealized_pnl",
            "trades",
            "hit_rate",
            "profit_factor",
            "expectancy",
            "sharpe",
            "sortino",
            "max_drawdown",
        ):
            expect(cell(page, "by-source", row["name"], field)).to_have_text(row["display"][field])
        for field in ("slippage_bps", "latency_ms", "reject_rate", "fees", "orders"):
            expect(cell(page, "execution-by-source", row["name"], field)).to_have_text(
                row["display"][field]
            )
    for row in summary["by_symbol"]:
        expect(cell(page, "by-symbol", row["name"], "realized_pnl")).to_have_text(
            row["display"]["realized_pnl"]
        )
    expect(cell(page, "overall", "overall", "realized_pnl")).to_have_text(
        summary["overall"]["display"]["realized_pnl"]
    )


@pytest.mark.usefixtures("history")
def test_router_health_shows_the_selectors_numbers_and_follows_new_fills_live(
    asgi_server: str,
    celery_worker_process: Process,
    operator_user: User,
    venue: tuple[BinanceTestServer, BinanceFutures],
    page: Page,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    off_the_page_thread(doctor_history)
    log_in(page, asgi_server, "olive", "a-long-secret-1")
    for label, path in TABS.items():
        page.get_by_role("link", name=label, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(label)
        page.screenshot(path=ARTIFACTS / f"trading-tab-{path.strip('/') or 'overview'}.png")

    page.goto(f"{asgi_server}/router-health/?window=24h")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    summary = off_the_page_thread(lambda: router_health_summary("24h"))
    assert summary is not None
    assert_tables_match(page, summary)
    # Two sources' curves, and the doctor confidence drawn over them on its own axis.
    page.wait_for_function(
        """() => {
            const chart = echarts.getInstanceByDom(document.getElementById("cum-pnl-chart"));
            if (!chart) return false;
            const series = chart.getOption().series;
            const overlay = series.filter((s) => s.name === "doctor confidence");
            return series.length === 3 && overlay.length === 1 && overlay[0].yAxisIndex === 1
                && overlay[0].data.length === 2 && overlay[0].data[1][1] === 0.5;
        }"""
    )
    updates = int(page.evaluate("Number(document.body.dataset.healthUpdates || 0)"))

    # A fill booked now: pushed as it commits, then the worker's refresh updates the tables.
    off_the_page_thread(lambda: trade(venue, "momentum", Side.SELL, "0.030", "61500"))

    first_fill = page.locator("#recent-fills tbody tr").first
    expect(first_fill).to_contain_text("momentum")
    expect(first_fill).to_contain_text("0.030")
    page.wait_for_function(
        f"Number(document.body.dataset.healthUpdates || 0) > {updates}", timeout=90_000
    )
    fresh = off_the_page_thread(lambda: router_health_summary("24h"))
    assert fresh is not None
    assert fresh["computed_at"] != summary["computed_at"]
    momentum = {row["name"]: row for row in fresh["by_source"]}["momentum"]
    assert momentum["values"]["trades"] == 2
    assert_tables_match(page, fresh)
    assert page.evaluate("document.body.dataset.resyncs") is None
    page.screenshot(path=ARTIFACTS / "router-health-live.png", full_page=True)


@pytest.mark.usefixtures("history")
def test_the_overview_shows_positions_and_controls_only_to_operators(
    asgi_server: str, operator_user: User, viewer_user: User, page: Page
) -> None:
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    expect(page.locator("#positions tbody tr[data-symbol=BTCUSDT]")).to_be_visible()
    expect(page.locator("#nav-chart")).to_be_visible()
    expect(page.locator("#kill-switch-form")).to_have_count(0)
    expect(page.locator("#flatten-form")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "overview-viewer.png")
    page.get_by_role("button", name="log out vera").click()

    log_in(page, asgi_server, "olive", "a-long-secret-1")
    form = page.locator("#kill-switch-form")
    expect(form).to_be_visible()
    expect(page.locator("#flatten-form")).to_be_visible()
    expect(page.locator("#halt-banner")).to_be_hidden()
    # A reason and a confirmation are required: the browser will not submit without them.
    form.get_by_role("button").click()
    expect(page).to_have_url(f"{asgi_server}/")
    expect(page.locator("#kpi-kill-switch")).to_have_text("off")
    form.locator("input[name=reason]").fill("checking the controls")
    form.locator("input[name=confirm]").check()
    form.get_by_role("button").click()
    expect(page.locator(".messages .success")).to_have_text("Kill switch on.")
    expect(page.locator("#kpi-kill-switch")).to_have_text("on")
    expect(page.locator("#halt-banner")).to_be_visible()
    expect(page.locator("#halt-title")).to_have_text("Kill switch is on")
    page.screenshot(path=ARTIFACTS / "overview-operator.png", full_page=True)


@pytest.mark.usefixtures("history")
def test_a_halt_shows_on_every_open_tab_live(
    asgi_server: str, viewer_user: User, page: Page
) -> None:
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    page.goto(f"{asgi_server}/router-health/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#halt-banner")).to_be_hidden()

    off_the_page_thread(lambda: risk_halt(reason="drawdown limit breached", actor="risk"))

    expect(page.locator("#halt-banner")).to_be_visible()
    expect(page.locator("#halt-reason")).to_have_text("drawdown limit breached")
    for path in TABS.values():
        page.goto(f"{asgi_server}{path}")
        expect(page.locator("#halt-reason")).to_have_text("drawdown limit breached")


@pytest.mark.usefixtures("history")
def test_overview_and_risk_show_the_selectors_numbers(
    asgi_server: str, viewer_user: User, page: Page
) -> None:
    from risk.dashboard import limits_compared
    from risk.services import risk_multiplier_set
    from routing.dashboard import positions_with_stops, risk_status

    def read() -> tuple[Any, Any, Any]:
        risk_multiplier_set(multiplier=Decimal("0.5"))
        return risk_status(), positions_with_stops(), limits_compared()

    status, positions, limits = off_the_page_thread(read)
    assert status is not None
    assert positions
    assert limits["rows"]

    log_in(page, asgi_server, "vera", "a-long-secret-2")
    expect(page.locator("#kpi-nav")).to_have_text(status["nav"])
    expect(page.locator("#kpi-drawdown")).to_have_text(status["drawdown"])
    for position in positions:
        row = page.locator(f"#positions tr[data-symbol='{position['symbol']}'] td")
        expect(row.nth(1)).to_have_text(position["quantity"])
        expect(row.nth(2)).to_have_text(position["entry_price"])
        expect(row.nth(4)).to_have_text(position["unrealized_pnl"])

    page.get_by_role("link", name="Risk", exact=True).click()
    for limit in limits["rows"]:
        for kind in ("configured", "effective"):
            expect(
                page.locator(f"#limits-table td[data-field='{limit['field']}'][data-kind='{kind}']")
            ).to_have_text(str(limit[kind]))
    expect(page.locator("#size-multiplier")).to_have_text(limits["size_multiplier"])
    page.screenshot(path=ARTIFACTS / "risk-multiplier-half.png")
