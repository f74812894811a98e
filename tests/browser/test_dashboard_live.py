"""A person's view: log in with a real browser and watch heartbeats arrive without reloading."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from doctor.tasks import heartbeat_task
from tests.conftest import ARTIFACTS, Process

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The ``page`` fixture comes last in every signature: rows are created before the browser's
# event loop starts (Django refuses ORM calls while one runs in the thread).

TABS = {
    "Overview": "/",
    "Router Health": "/router-health/",
    "Replays": "/replays/",
    "Risk": "/risk/",
    "ML Insights": "/ml-insights/",
    "Doctor": "/doctor/",
}


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/")


def test_worker_heartbeats_arrive_live_on_an_open_page(
    asgi_server: str, celery_worker_process: Process, operator_user: User, page: Page
) -> None:
    log_in(page, asgi_server, "olive", "a-long-secret-1")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    indicator = page.locator("#last-heartbeat")
    expect(indicator).to_have_text("none yet")

    heartbeat_task.apply_async(kwargs={"component": "worker"}, queue="default")
    expect(indicator).to_have_attribute("data-at", re.compile(r".+"))
    first = indicator.get_attribute("data-at")
    expect(indicator).to_contain_text("s ago")

    heartbeat_task.apply_async(kwargs={"component": "worker"}, queue="default")
    expect(indicator).not_to_have_attribute("data-at", first or "")
    # Both pushes arrived in order: no gap made the page re-sync.
    assert page.evaluate("document.body.dataset.resyncs") is None


def test_every_tab_opens_and_the_doctor_tab_updates_live(
    asgi_server: str, celery_worker_process: Process, viewer_user: User, page: Page
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    for label, path in TABS.items():
        page.get_by_role("link", name=label, exact=True).click()
        expect(page).to_have_url(f"{asgi_server}{path}")
        expect(page.get_by_role("heading", level=1)).to_have_text(label)
        expect(page.locator(".tab.active")).to_have_text(label)
        page.screenshot(path=ARTIFACTS / f"tab-{path.strip('/') or 'overview'}.png")

    # On the Doctor tab (the last one opened), heartbeats fill the table without a reload.
    heartbeat_task.apply_async(kwargs={"component": "ml"}, queue="ml")
    row = page.locator("#heartbeats tbody tr[data-component=ml]")
    expect(row).to_be_visible()
    expect(row.locator("td").nth(1)).to_contain_text("test-")
    heartbeat_task.apply_async(kwargs={"component": "ml"}, queue="ml")
    # The second heartbeat gives the chart its first interval, drawn by ECharts in place.
    page.wait_for_function(
        """() => {
            const chart = echarts.getInstanceByDom(document.getElementById("heartbeat-chart"));
            const series = chart.getOption().series;
            return series.length === 1 && series[0].name === "ml" && series[0].data.length === 1;
        }"""
    )
    page.screenshot(path=ARTIFACTS / "tab-doctor-live.png")
