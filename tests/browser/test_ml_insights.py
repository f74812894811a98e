"""A person's view of the ML Insights tab in a real browser, against a really trained model:
every number on the page equals the selector's, a prediction scored while the page is open
appears without a reload, and a new insights computation updates the page in place."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from mlinsights.dashboard import ml_insights
from mlinsights.features import features as feature_rows
from mlinsights.models import ModelVersion, Prediction
from mlinsights.registry import artifact_cache_clear, artifact_load
from mlinsights.services import (
    insights_refresh,
    model_train,
    outcomes_backfill,
    predictions_score,
)
from routing.models import MarketBar
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_router_health import off_the_page_thread
from tests.conftest import ARTIFACTS
from tests.mlinsights.markets import bars_store, close_time, market

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BARS = 3_000
HORIZON = 5
FIRST = range(BARS - 700, BARS - 400)  # resolved before the page opens
SECOND = range(BARS - 400, BARS - 100)  # resolved while it is open


@pytest.fixture
def model_dir(tmp_path: Path, settings: Any) -> Iterator[Path]:
    directory = tmp_path / "models"
    settings.MODEL_DIR = directory
    artifact_cache_clear()
    yield directory
    artifact_cache_clear()


@pytest.fixture
def frame(transactional_db: None) -> pd.DataFrame:
    bars = market(planted=True, seed=11, n=BARS)
    bars_store(bars)
    return bars


def scored(version: ModelVersion, bars: pd.DataFrame, rows: range, *, now: datetime) -> None:
    """The model's predictions on ``rows`` of the bars (as the scoring task would store them,
    in one go), then their outcomes from the stored bars."""
    model = artifact_load(
        name=version.artifact, sha256=version.artifact_sha256, features=list(version.features)
    )
    x = feature_rows(bars).iloc[list(rows)][list(version.features)]
    probabilities = model.predict_proba(x)[:, 1]
    closes = dict(
        MarketBar.objects.filter(close_time__in=list(x.index)).values_list("close_time", "close")
    )
    Prediction.objects.bulk_create(
        [
            Prediction(
                model_version=version,
                symbol="BTCUSDT",
                as_of=at.to_pydatetime(),
                horizon_bars=version.horizon_bars,
                probability=float(p),
                close=closes[at.to_pydatetime()],
                features={name: float(x.loc[at, name]) for name in version.features},
                requested_at=at.to_pydatetime(),
                scored_at=at.to_pydatetime() + timedelta(milliseconds=40),
                latency_ms=40.0,
            )
            for at, p in zip(x.index, probabilities, strict=True)
        ]
    )
    assert outcomes_backfill(now=now) == len(rows)


@pytest.fixture
def shadow_model(model_dir: Path, frame: pd.DataFrame) -> ModelVersion:
    version = model_train(
        symbols=["BTCUSDT"],
        start=close_time(frame, 0),
        end=close_time(frame, BARS - 1),
        algorithm="logistic_regression",
        horizon=HORIZON,
        folds=3,
    )
    now = close_time(frame, BARS - 1)
    scored(version, frame, FIRST, now=now)
    insights_refresh(now=now)
    return version


def expect_page_matches(page: Page, shown: dict[str, Any]) -> None:
    expect(page.locator("#model-title")).to_have_text(
        f"v{shown['version']} · {shown['algorithm_label']}"
    )
    expect(page.locator("#state-badge")).to_have_text(shown["state_label"])
    expect(page.locator("#computed-at")).to_have_attribute("data-at", shown["computed_at"])
    for kpi in shown["live"] + shown["training"]:
        expect(page.locator(f"dd[data-kpi='{kpi['key']}']")).to_have_text(kpi["display"])
    promotion = shown["promotion"]
    expect(page.locator("#promotion-status")).to_have_text(
        "passes the rule" if promotion["passes"] else "stays in shadow"
    )
    expect(page.locator("#promotion-reason")).to_have_text(promotion["reason"])
    expect(page.locator("#promotion-brier")).to_have_text(promotion["display"]["brier"])
    for row in shown["drift"]:
        line = page.locator(f"#drift-table tr[data-feature='{row['feature']}']")
        expect(line.locator("td[data-col=psi]")).to_have_text(row["display"])
        expect(line).to_have_attribute("data-level", row["level"])
    expect(page.locator("#drift-rows")).to_have_text(shown["drift_rows_display"])
    expect(page.locator("#importance-table td[data-col=importance]")).to_have_text(
        [row["display"] for row in shown["importance"]]
    )
    for row in shown["stale"]:
        expect(page.locator(f"#stale-table tr[data-symbol='{row['symbol']}'] td.num")).to_have_text(
            row["display"]
        )


def chart_points(page: Page, chart_id: str, series: int) -> int:
    return int(
        page.evaluate(
            """([id, index]) => {
                const chart = echarts.getInstanceByDom(document.getElementById(id));
                return chart ? chart.getOption().series[index].data.length : -1;
            }""",
            [chart_id, series],
        )
    )


def test_the_tab_shows_the_selectors_numbers_and_follows_new_insights_live(
    asgi_server: str, viewer_user: User, shadow_model: ModelVersion, frame: pd.DataFrame, page: Page
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shown = off_the_page_thread(ml_insights)
    assert shown is not None
    assert shown["live"][5]["display"] == "300"  # resolved predictions
    assert all(row["psi"] is not None for row in shown["drift"])  # 300 live rows: a reading

    log_in(page, asgi_server, "vera", "a-long-secret-2")
    page.get_by_role("link", name="ML Insights", exact=True).click()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect_page_matches(page, shown)
    expect(page.locator("#recent-table tbody tr")).to_have_count(len(shown["recent"]))
    expect(page.locator("#recent-table td[data-col=probability]")).to_have_text(
        [row["probability_display"] for row in shown["recent"]]
    )
    page.wait_for_function(
        "() => echarts.getInstanceByDom(document.getElementById('calibration-chart')) !== undefined"
    )
    assert chart_points(page, "calibration-chart", 0) == len(shown["calibration"])
    assert chart_points(page, "rolling-chart", 0) == len(shown["curves"]["time"])
    page.evaluate("window.notReloaded = true")
    page.screenshot(path=ARTIFACTS / "ml-insights.png", full_page=True)

    # A bar is scored while the page is open: the pushed prediction tops the table.
    last = close_time(frame, BARS - 1)
    (prediction,) = off_the_page_thread(
        lambda: predictions_score(
            symbol="BTCUSDT", as_of=last, requested_at=last + timedelta(seconds=1)
        )
    )
    newest = page.locator("#recent-table tbody tr").first
    expect(newest).to_have_attribute("data-id", str(prediction.pk))
    expect(newest.locator("td[data-col=outcome]")).to_have_text("pending")
    expect(newest.locator("td[data-col=probability]")).to_have_text(
        f"{prediction.probability * 100:.1f}%"
    )
    updates = int(page.evaluate("Number(document.body.dataset.mlUpdates || 0)"))

    # More outcomes come in and the ML cycle computes the insights again.
    later = last + timedelta(minutes=1)

    def recompute() -> dict[str, Any] | None:
        scored(shadow_model, frame, SECOND, now=later)
        insights_refresh(now=later)
        return ml_insights()

    fresh = off_the_page_thread(recompute)
    assert fresh is not None
    assert fresh["computed_at"] != shown["computed_at"]
    assert fresh["live"][5]["display"] == "600"
    assert fresh["live"][6]["display"] == "1"  # the prediction scored above, pending

    page.wait_for_function(f"Number(document.body.dataset.mlUpdates || 0) > {updates}")
    expect_page_matches(page, fresh)
    expect(page.locator("#recent-table tbody tr").first).to_have_attribute(
        "data-id", str(prediction.pk)
    )
    page.wait_for_function(
        f"""() => {{
            const chart = echarts.getInstanceByDom(document.getElementById('rolling-chart'));
            return chart.getOption().series[0].data.length === {len(fresh["curves"]["time"])};
        }}"""
    )
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("document.body.dataset.resyncs") is None
    page.screenshot(path=ARTIFACTS / "ml-insights-live.png", full_page=True)


def test_an_empty_tab_fills_in_when_the_first_insights_are_computed(
    asgi_server: str, viewer_user: User, model_dir: Path, frame: pd.DataFrame, page: Page
) -> None:
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    page.goto(f"{asgi_server}/ml-insights/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#ml-empty")).to_contain_text("No model trained yet")
    expect(page.locator("#ml-empty")).to_contain_text("manage.py train_model")

    def first_model() -> dict[str, Any] | None:
        version = model_train(
            symbols=["BTCUSDT"],
            start=close_time(frame, 0),
            end=close_time(frame, BARS - 1),
            algorithm="logistic_regression",
            horizon=HORIZON,
            folds=3,
        )
        insights_refresh(now=close_time(frame, BARS - 1))
        return ml_insights(version.version)

    shown = off_the_page_thread(first_model)
    assert shown is not None

    expect(page.locator("#state-badge")).to_have_text("shadow: not trading")
    expect(page.locator("#ml-empty")).to_have_count(0)
    expect(page.locator("#models-table tbody tr")).to_have_count(1)
    expect_page_matches(page, shown)


def test_a_bad_version_in_the_address_is_explained(
    asgi_server: str, viewer_user: User, model_dir: Path, page: Page
) -> None:
    log_in(page, asgi_server, "vera", "a-long-secret-2")
    page.goto(f"{asgi_server}/ml-insights/?version=seven")

    expect(page.locator("#ml-problem")).to_have_text(
        "“seven” is not a model version: choose one from the list (showing the default model)."
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("ML Insights")
