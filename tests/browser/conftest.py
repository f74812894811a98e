"""Headless Chromium for the browser tests: CHROMIUM_PATH, else chromium on PATH, else the
browser Playwright installed itself. A missing browser fails the test; it is never skipped."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

# Generous waits for outcomes; these tests never measure speed.
expect.set_options(timeout=60_000)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_executable() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"CHROMIUM_PATH={configured} is not an executable file")
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser(transactional_db: None) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls
    # while one runs: so the browser starts after the database fixtures and stops before
    # their teardown (a fresh browser per test).
    executable = chromium_executable()
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
        except Exception as error:
            pytest.fail(
                "no usable Chromium: install Debian's chromium, set CHROMIUM_PATH, or run "
                f"`playwright install chromium` ({error})"
            )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()
