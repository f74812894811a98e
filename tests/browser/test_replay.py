"""Replays in a real browser: the Replays tab lists a done run and follows a new one live,
the Router Health page with ``?run=`` shows the replay's figures (not live's, and live pushes
leave it alone), and the divergence page explains the gap by its causes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from routing.divergence import CAUSES, divergence_report
from routing.health import router_health_refresh, router_health_summary
from routing.models import ReplayRun
from routing.replay import replay_create, replay_start
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_router_health import off_the_page_thread
from tests.conftest import ARTIFACTS
from tests.routing.replay_support import MS, T0, eager_paper_trading, live_session
from tradingsite.replaydb import replay_database, replay_database_drop

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("global_limits"),
]

MINUTES = 20


@pytest.fixture(autouse=True)
def replay_databases(transactional_db: None) -> Iterator[None]:
    yield
    for pk in ReplayRun.objects.values_list("pk", flat=True):
        replay_database_drop(pk)


@pytest.fixture
def done_run(settings: Any, global_limits: Any) -> ReplayRun:
    """A live paper session with its router health, and a done replay of it that paid more
    slippage (so its figures differ from live's)."""
    eager_paper_trading(settings, global_limits)
    live_session(MINUTES)
    router_health_refresh()
    run = replay_create(
        start=T0 - MS,
        end=T0 + timedelta(minutes=MINUTES - 1) - MS,
        symbols=["BTCUSDT"],
        actor="olive (dashboard)",
        slippage_bps="25",
    )
    replay_start(run.pk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.DONE, run.error
    return run


def overall_pnl(page: Page) -> Any:
    return page.locator("#overall tr[data-name='overall'] td[data-field='realized_pnl']")


def test_a_done_replay_is_listed_and_its_router_health_and_divergence_are_shown(
    asgi_server: str, operator_user: User, done_run: ReplayRun, page: Page
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    run_id = done_run.pk

    def figures() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        live = router_health_summary("7d")
        with replay_database(run_id):
            replayed = router_health_summary("7d")
        assert live is not None
        assert replayed is not None
        return live, replayed, divergence_report(done_run).as_dict()

    live, replayed, report = off_the_page_thread(figures)
    live_pnl = live["overall"]["display"]["realized_pnl"]
    replay_pnl = replayed["overall"]["display"]["realized_pnl"]
    assert replay_pnl != live_pnl

    log_in(page, asgi_server, "olive", "a-long-secret-1")
    page.get_by_role("link", name="Replays", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Replays")
    row = page.locator(f"#replays tr[data-run='{run_id}']")
    expect(row).to_have_attribute("data-status", "done")
    expect(row.locator("td[data-field=pnl]")).to_have_text(done_run.summary["pnl"])
    expect(row.locator("td[data-field=progress]")).to_contain_text(f"{MINUTES} / {MINUTES}")
    page.screenshot(path=ARTIFACTS / "replays-tab.png", full_page=True)

    # The run's Router Health: the replay's own figures and curves, not live's.
    row.get_by_role("link", name="router health").click()
    expect(page).to_have_url(f"{asgi_server}/router-health/?run={run_id}")
    expect(page.locator("#replay-banner")).to_contain_text(f"Replay {run_id}")
    expect(page.locator("#run-choice")).to_have_value(str(run_id))
    expect(overall_pnl(page)).to_have_text(replay_pnl)
    page.wait_for_function("Number(document.body.dataset.chartsDrawn || 0) >= 1")
    nav = page.evaluate(
        """() => {
            const series = echarts.getInstanceByDom(document.getElementById("nav-chart"))
                .getOption().series[0].data;
            return series[series.length - 1][1];
        }"""
    )
    assert nav == pytest.approx(float(done_run.summary["final_nav"]))
    curves = page.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById("cum-pnl-chart"))
            .getOption().series.map((s) => s.name)"""
    )
    assert "doctor confidence" not in curves
    assert set(curves) == {row["name"] for row in replayed["by_source"]}

    # A live refresh is pushed to the page, which keeps showing the replay.
    seq = int(page.evaluate("Number(document.body.dataset.liveSeq || 0)"))
    off_the_page_thread(router_health_refresh)
    page.wait_for_function(f"Number(document.body.dataset.liveSeq || 0) > {seq}")
    expect(overall_pnl(page)).to_have_text(replay_pnl)
    assert page.evaluate("document.body.dataset.healthUpdates") is None
    page.screenshot(path=ARTIFACTS / "router-health-replay.png", full_page=True)

    # Live again from the selector.
    page.locator("#run-choice").select_option("")
    expect(page).to_have_url(f"{asgi_server}/router-health/?run=&window=7d")
    expect(overall_pnl(page)).to_have_text(live_pnl)
    expect(page.locator("#replay-banner")).to_have_count(0)

    # The divergence page: both PnLs and the gap split into its causes.
    page.goto(f"{asgi_server}/router-health/?run={run_id}")
    page.get_by_role("link", name="Divergence from live").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Replay {run_id} vs live")
    expect(page.locator("#live-pnl")).to_have_text(report["live_pnl"])
    expect(page.locator("#replay-pnl")).to_have_text(report["replay_pnl"])
    expect(page.locator("#pnl-gap")).to_have_text(report["gap"])
    for cause in CAUSES:
        part = page.locator(f"#causes tr[data-cause='{cause}'] td[data-field='pnl']")
        expect(part).to_have_text(report["causes"][cause]["pnl"])
    expect(page.locator("#divergence-trades tbody tr")).to_have_count(len(report["trades"]))
    expect(page.locator("#divergence-csv")).to_have_attribute(
        "href", f"/api/v1/replays/{run_id}/divergence.csv"
    )
    page.screenshot(path=ARTIFACTS / "replay-divergence.png", full_page=True)


def test_a_replay_started_from_the_form_shows_its_progress_live(
    asgi_server: str, operator_user: User, done_run: ReplayRun, page: Page
) -> None:
    log_in(page, asgi_server, "olive", "a-long-secret-1")
    page.goto(f"{asgi_server}/replays/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    form = page.locator("#replay-form")
    form.locator("input[name=start]").fill("2026-03-02T12:00")
    form.locator("input[name=end]").fill("2026-03-02T12:10")
    form.locator("input[name=symbols]").fill("BTCUSDT")
    form.get_by_role("button", name="Start replay").click()
    expect(page.locator(".messages .success")).to_contain_text("queued: 10 bars to replay")
    run = off_the_page_thread(lambda: ReplayRun.objects.exclude(pk=done_run.pk).get())
    row = page.locator(f"#replays tr[data-run='{run.pk}']")
    expect(row).to_have_attribute("data-status", "queued")
    expect(row.get_by_role("button", name="stop")).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # The worker's part, here: its pushes update the row without a reload.
    off_the_page_thread(lambda: replay_start(run.pk))
    expect(row).to_have_attribute("data-status", "done")
    expect(row.locator("td[data-field=progress]")).to_contain_text("10 / 10")
    expect(row.get_by_role("link", name="divergence")).to_have_attribute(
        "href", f"/replays/{run.pk}/divergence/"
    )
    expect(row.get_by_role("button", name="stop")).to_have_count(0)
    assert page.evaluate("Number(document.body.dataset.replayUpdates || 0)") >= 1
    # newest first
    expect(page.locator("#replays tbody tr").first).to_have_attribute("data-run", str(run.pk))
