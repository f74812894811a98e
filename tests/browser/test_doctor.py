"""The Doctor tab in a real browser: the latest cached checks, the confidence history, and a
new snapshot arriving live (a check turning red without a reload)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from doctor.checks import FAIL, OK, Check, CheckContext, Finding
from doctor.models import DoctorSnapshot
from doctor.snapshots import doctor_report, snapshot_store
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_router_health import off_the_page_thread
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def checks_with(executor: str) -> tuple[Check, ...]:
    def executor_check(_: CheckContext) -> Finding:
        return Finding(executor, f"executor is {executor}", 1.0 if executor == OK else 0.0)

    def database_check(_: CheckContext) -> Finding:
        return Finding(OK, "answers", 1.0)

    return (
        Check("database", "Database", database_check, weight=3, critical=True),
        Check("executor", "Executor heartbeat", executor_check, weight=3, critical=True),
    )


def store(executor: str, minutes_ago: float) -> DoctorSnapshot:
    report = doctor_report(
        now=timezone.now() - timedelta(minutes=minutes_ago), checks=checks_with(executor)
    )
    return snapshot_store(report, trigger=DoctorSnapshot.Trigger.SCHEDULE)


def test_doctor_tab_shows_the_cached_checks_and_a_red_check_arrives_live(
    asgi_server: str, viewer_user: User, page: Page
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    off_the_page_thread(lambda: store(OK, 2))
    off_the_page_thread(lambda: store(OK, 1))
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    page.goto(f"{asgi_server}/doctor/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#overall-status")).to_have_text(OK)
    expect(page.locator("#overall-confidence")).to_have_text("1.00")
    executor_row = page.locator("#checks tr[data-name=executor]")
    expect(executor_row).to_have_attribute("data-status", OK)
    page.wait_for_function(
        """() => {
            const chart = echarts.getInstanceByDom(document.getElementById("confidence-chart"));
            return chart && chart.getOption().series[0].data.length === 2;
        }"""
    )

    # The executor stops: the next snapshot is pushed as it commits and the row turns red.
    red = off_the_page_thread(lambda: store(FAIL, 0))
    expect(executor_row).to_have_attribute("data-status", FAIL)
    expect(executor_row.locator(".status-cell")).to_have_text(FAIL)
    expect(executor_row).to_contain_text("executor is fail")
    expect(page.locator("#overall-status")).to_have_attribute("data-status", FAIL)
    expect(page.locator("#overall-confidence")).to_have_text(f"{red.confidence:.2f}")
    page.wait_for_function(
        """() => {
            const data = echarts.getInstanceByDom(document.getElementById("confidence-chart"))
                .getOption().series[0].data;
            return data.length === 3 && data[2][1] === 0;
        }"""
    )
    page.screenshot(path=ARTIFACTS / "tab-doctor-red.png")
    # The red check is an open incident on the same page after a reload.
    page.reload()
    expect(page.locator("#incidents tr[data-code='doctor/check-executor']")).to_be_visible()
