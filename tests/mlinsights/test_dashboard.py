"""The ML Insights tab: its selectors against real rows and a real insights computation, the
read-only API built on them, and the page.

Numbers are checked against an independent recomputation (scikit-learn, plain numpy), not
against the cache they are read from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from sklearn.metrics import roc_auc_score

from mlinsights import insights
from mlinsights.dashboard import (
    MODELS_SHOWN,
    ml_insights,
    ml_insights_context,
    ml_insights_missing,
    ml_models,
    ml_predictions_recent,
    ml_stale_counts,
    number_display,
    version_parse,
)
from mlinsights.models import InsightCache, ModelVersion, Prediction
from mlinsights.services import insights_refresh, ml_prediction_for_signal, stale_count
from tests.risk.test_dashboard import Page
from tradingsite.display import NO_VALUE

pytestmark = pytest.mark.django_db

HORIZON = 5
T0 = datetime(2026, 2, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=12)
FEATURES = ["ret_1", "rsi_14"]


# --- factories ----------------------------------------------------------------------------------


def version_row(
    number: int,
    state: str = ModelVersion.State.SHADOW,
    *,
    metrics: dict[str, Any] | None = None,
    importance: dict[str, float] | None = None,
    reference: dict[str, Any] | None = None,
) -> ModelVersion:
    """A registry row without an artifact (the tab reads rows and predictions, never models)."""
    return ModelVersion.objects.create(
        version=number,
        algorithm="logistic_regression",
        features=FEATURES,
        symbols=["BTCUSDT"],
        horizon_bars=HORIZON,
        train_start=datetime(2026, 1, 1, tzinfo=UTC),
        train_end=datetime(2026, 1, 2, tzinfo=UTC),
        rows=1000 + number,
        metrics=metrics
        if metrics is not None
        else {
            "auc": 0.5512,
            "brier": 0.24876,
            "hit_rate": 0.5321,
            "samples": 750,
            "calibration": [[0.35, 0.4, 300], [0.62, 0.58, 450]],
            "base_rate": 0.512,
        },
        feature_importance=importance if importance is not None else {},
        drift_reference=reference if reference is not None else {},
        artifact=f"none-{number}.joblib",
        artifact_sha256="0" * 64,
        state=state,
        created_at=datetime(2026, 1, 2, number % 24, tzinfo=UTC),
    )


def predictions(
    version: ModelVersion,
    outcomes: Any,
    probabilities: Any,
    *,
    start: datetime = T0,
    symbol: str = "BTCUSDT",
    features: list[dict[Any, Any]] | None = None,
    latency_ms: float = 1.0,
) -> list[Prediction]:
    """Predictions of ``version`` on consecutive bars from ``start``; an outcome of None is a
    prediction still waiting for its horizon."""
    rows = [
        Prediction(
            model_version=version,
            symbol=symbol,
            as_of=start + timedelta(minutes=i),
            horizon_bars=HORIZON,
            probability=float(p),
            close=Decimal(100),
            features=features[i] if features is not None else {},
            requested_at=start + timedelta(minutes=i),
            scored_at=start + timedelta(minutes=i),
            latency_ms=latency_ms + i,
            outcome=None if y is None else float(y),
            resolved_at=None if y is None else start + timedelta(minutes=i + HORIZON),
        )
        for i, (y, p) in enumerate(zip(outcomes, probabilities, strict=True))
    ]
    return Prediction.objects.bulk_create(rows)


def scored_history(version: ModelVersion, n: int = 300, seed: int = 5) -> tuple[Any, Any]:
    """``n`` resolved predictions with some skill, on the bars from T0."""
    rng = np.random.default_rng(seed)
    outcomes = rng.integers(0, 2, n).astype(float)
    probabilities = np.clip(outcomes * 0.3 + 0.35 + rng.normal(0, 0.12, n), 0.01, 0.99)
    predictions(version, outcomes, probabilities)
    return outcomes, probabilities


def kpis(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in rows}


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


# --- formatting ---------------------------------------------------------------------------------


class TestNumberDisplay:
    @pytest.mark.parametrize(
        ("kind", "value", "text"),
        [
            ("probability", 0.6234, "62.3%"),
            ("hit_rate", 1.0, "100.0%"),
            ("base_rate", 0.5, "50.0%"),
            ("brier_skill", 0.0234, "+2.3%"),
            ("brier_skill", -0.112, "-11.2%"),
            ("brier_skill", -0.0001, "+0.0%"),
            ("brier", 0.248751, "0.2488"),
            ("auc", 0.55129, "0.551"),
            ("psi", 0.10049, "0.100"),
            ("importance", -0.00001, "0.0000"),
            ("count", 12345, "12,345"),
            ("ms", 1234.56, "1,234.6"),
        ],
    )
    def test_each_kind_of_number_has_one_format(self, kind: str, value: float, text: str) -> None:
        assert number_display(kind, value) == text

    @pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
    def test_a_missing_number_is_an_en_dash(self, value: float | None) -> None:
        assert number_display("brier", value) == NO_VALUE == "\N{EN DASH}"

    def test_an_unknown_kind_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no display format"):
            number_display("furlongs", 1.0)

    @pytest.mark.parametrize(
        ("text", "version"),
        [("3", 3), ("v12", 12), (" V7 ", 7), ("0", None), ("-1", None), ("abc", None), ("", None)],
    )
    def test_a_version_is_read_from_a_query_string(self, text: str, version: int | None) -> None:
        assert version_parse(text) == version


# --- which model is shown -----------------------------------------------------------------------


class TestWhichModel:
    def test_by_default_the_active_model_is_shown_even_beside_a_newer_shadow(self) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        shadow = version_row(2)
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert (shown["version"], shown["state"], shown["trading"]) == (1, "active", True)
        assert shown["state_label"] == "active: trading"
        assert ml_insights(shadow.version) is not None
        assert active.version != shadow.version

    def test_without_an_active_model_the_newest_shadow_one_is_shown(self) -> None:
        version_row(1, ModelVersion.State.RETIRED)
        version_row(2)
        version_row(3)
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert (shown["version"], shown["state"], shown["trading"]) == (3, "shadow", False)
        assert shown["state_label"] == "shadow: not trading"

    def test_with_no_model_nothing_is_shown_and_it_says_how_to_train_one(self) -> None:
        assert ml_insights() is None
        message = ml_insights_missing()
        assert message.startswith("No model trained yet.")
        assert "manage.py train_model" in message

    def test_with_only_retired_models_there_is_no_default(self) -> None:
        version_row(1, ModelVersion.State.RETIRED)

        assert ml_insights() is None
        assert "every model is retired" in ml_insights_missing()

    def test_a_model_whose_insights_are_not_computed_yet_says_so(self) -> None:
        version_row(4)

        assert ml_insights() is None
        assert ml_insights(4) is None
        assert "insights of v4 are not computed yet" in ml_insights_missing()
        assert "insights of v4 are not computed yet" in ml_insights_missing(4)

    def test_a_retired_model_never_measured_says_so(self) -> None:
        version_row(1, ModelVersion.State.RETIRED)

        assert ml_insights(1) is None
        assert ml_insights_missing(1).startswith("v1 was retired before its insights")

    def test_an_unknown_version_says_there_is_no_such_model(self) -> None:
        version_row(1)
        insights_refresh(now=NOW)

        assert ml_insights(9) is None
        assert ml_insights_missing(9) == "There is no model v9."

    def test_the_state_is_the_registrys_not_the_one_cached(self) -> None:
        version = version_row(1)
        scored_history(version, n=40)
        insights_refresh(now=NOW)
        cached = InsightCache.objects.get(model_version=version).data
        assert cached["state"] == "shadow"
        assert cached["promotion"] is not None

        # promoted from the admin: the cache is only recomputed by the next cycle
        ModelVersion.objects.filter(pk=version.pk).update(state=ModelVersion.State.ACTIVE)
        shown = ml_insights(1)

        assert shown is not None
        assert (shown["state"], shown["trading"], shown["promotion"]) == ("active", True, None)


# --- the numbers ---------------------------------------------------------------------------------


class TestNumbers:
    def test_live_scores_are_formatted_from_an_independent_recomputation(self) -> None:
        version = version_row(1)
        outcomes, probabilities = scored_history(version, n=300)
        predictions(version, [None, None], [0.7, 0.2], start=T0 + timedelta(hours=6))
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        live = kpis(shown["live"])
        brier = float(np.mean((probabilities - outcomes) ** 2))
        base_rate = float(outcomes.mean())
        climatology = base_rate * (1 - base_rate)
        hit_rate = float(np.mean((probabilities > 0.5) == (outcomes == 1)))
        auc = float(roc_auc_score(outcomes, probabilities))
        latencies = np.concatenate([np.arange(300) + 1.0, [1.0, 2.0]])
        assert live["brier"]["display"] == f"{brier:.4f}"
        assert live["brier"]["value"] == pytest.approx(brier)
        assert live["brier_skill"]["display"] == f"{(1 - brier / climatology) * 100:+.1f}%"
        assert live["hit_rate"]["display"] == f"{hit_rate * 100:.1f}%"
        assert live["auc"]["display"] == f"{auc:.3f}"
        assert live["base_rate"]["display"] == f"{base_rate * 100:.1f}%"
        assert live["samples"]["display"] == "300"
        assert live["pending"]["display"] == "2"
        assert live["latency_p50"]["display"] == f"{np.percentile(latencies, 50):,.1f}"
        assert live["latency_p95"]["display"] == f"{np.percentile(latencies, 95):,.1f}"
        assert shown["predictions"] == 302
        assert [kpi["key"] for kpi in shown["live"]] == [
            "brier",
            "brier_skill",
            "hit_rate",
            "auc",
            "base_rate",
            "samples",
            "pending",
            "latency_p50",
            "latency_p95",
        ]

    def test_walk_forward_scores_come_from_the_training_metrics(self) -> None:
        version_row(1)
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        training = {key: kpi["display"] for key, kpi in kpis(shown["training"]).items()}
        assert training == {
            "wf_brier": "0.2488",
            "wf_hit_rate": "53.2%",
            "wf_auc": "0.551",
            "wf_base_rate": "51.2%",
            "wf_samples": "750",
            "rows": "1,001",
        }
        assert shown["training_calibration"] == [
            {"mean_predicted": 0.35, "observed_frequency": 0.4, "count": 300},
            {"mean_predicted": 0.62, "observed_frequency": 0.58, "count": 450},
        ]

    def test_a_model_without_resolved_predictions_shows_dashes_not_zeros(self) -> None:
        version_row(1, metrics={"auc": None, "brier": 0.25, "hit_rate": 0.5, "samples": 10})
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        live = kpis(shown["live"])
        for key in ("brier", "brier_skill", "hit_rate", "auc", "base_rate"):
            assert live[key]["display"] == NO_VALUE, key
            assert live[key]["value"] is None
        assert live["samples"]["display"] == "0"
        assert kpis(shown["training"])["wf_auc"]["display"] == NO_VALUE
        assert shown["calibration"] == []
        assert shown["training_calibration"] == []
        assert shown["curves"] == {"window": None, "time": [], "hit_rate": [], "brier": []}
        assert shown["recent"] == []

    def test_calibration_and_rolling_curves_keep_their_raw_series_for_the_charts(self) -> None:
        version = version_row(1)
        outcomes, probabilities = scored_history(version, n=400)
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert sum(point["count"] for point in shown["calibration"]) == 400
        bins = np.minimum((probabilities * 10).astype(int), 9)
        first = int(bins.min())
        assert shown["calibration"][0]["observed_frequency"] == pytest.approx(
            outcomes[bins == first].mean()
        )
        curves = shown["curves"]
        assert curves["window"] == 100
        # 301 full windows, thinned to the chart's 300 points
        assert len(curves["time"]) == len(curves["hit_rate"]) == len(curves["brier"]) == 300
        assert curves["brier"][-1] == pytest.approx(
            float(np.mean((probabilities[-100:] - outcomes[-100:]) ** 2))
        )
        assert curves["time"][-1] == (T0 + timedelta(minutes=399)).isoformat()

    def test_recent_predictions_show_the_time_probability_and_outcome(self) -> None:
        version = version_row(1)
        predictions(version, [1, 0, 1, None], [0.71, 0.64, 0.3, 0.55])
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        rows = [
            (
                row["as_of_display"],
                row["probability_display"],
                row["result"],
                row["outcome_display"],
            )
            for row in shown["recent"]
        ]
        assert rows == [
            ("2026-02-01 00:03", "55.0%", "pending", "pending"),
            ("2026-02-01 00:02", "30.0%", "miss", "✗ rose"),
            ("2026-02-01 00:01", "64.0%", "miss", "✗ fell"),
            ("2026-02-01 00:00", "71.0%", "hit", "✓ rose"),
        ]
        assert shown["recent"][0]["symbol"] == "BTCUSDT"

    def test_feature_importance_is_largest_first_with_bars_relative_to_the_largest(self) -> None:
        version_row(1, importance={"ret_1": 0.004, "rsi_14": 0.016, "vol_z": -0.001})
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert [(row["feature"], row["display"], row["bar"]) for row in shown["importance"]] == [
            ("rsi_14", "0.0160", 100.0),
            ("ret_1", "0.0040", 25.0),
            ("vol_z", "-0.0010", 0.0),
        ]

    def test_drift_is_read_per_feature_and_the_most_drifted_comes_first(self) -> None:
        rng = np.random.default_rng(3)
        training = pd.DataFrame(
            {"ret_1": rng.normal(0, 1, 5000), "rsi_14": rng.normal(50, 10, 5000)}
        )
        reference = insights.drift_reference(training)
        version = version_row(1, reference=reference)
        live = pd.DataFrame({"ret_1": rng.normal(0, 1, 400), "rsi_14": rng.normal(58, 10, 400)})
        predictions(
            version,
            [None] * 400,
            [0.5] * 400,
            start=NOW - timedelta(hours=7),
            features=live.to_dict("records"),
        )
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        expected = insights.psi(reference, live)
        assert [(row["feature"], row["display"], row["level"]) for row in shown["drift"]] == [
            ("rsi_14", f"{expected['rsi_14']:.3f}", insights.drift_level(expected["rsi_14"])),
            ("ret_1", f"{expected['ret_1']:.3f}", "stable"),
        ]
        assert shown["drift"][0]["level"] in {"moderate", "significant"}
        assert shown["drift_rows"] == 400
        assert shown["drift_rows_display"] == "400"

    def test_too_few_live_rows_give_no_drift_reading(self) -> None:
        rng = np.random.default_rng(3)
        reference = insights.drift_reference(pd.DataFrame({"ret_1": rng.normal(0, 1, 1000)}))
        version = version_row(1, reference=reference)
        predictions(version, [None] * 5, [0.5] * 5, start=NOW - timedelta(hours=1))
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert shown["drift"] == [
            {"feature": "ret_1", "psi": None, "display": NO_VALUE, "level": "unknown"}
        ]

    def test_a_shadow_model_shows_the_promotion_rule_with_its_reason(self) -> None:
        version = version_row(1)
        scored_history(version, n=60)
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        promotion = shown["promotion"]
        assert promotion["passes"] is False
        assert promotion["incumbent"] == "base rate"
        assert "fewer than the 100 required" in promotion["reason"]
        assert promotion["display"]["samples"] == "60"
        assert promotion["display"]["brier"] == f"{promotion['brier']:.4f}"
        assert promotion["display"]["brier_incumbent"] == f"{promotion['brier_incumbent']:.4f}"

    def test_stale_predictions_are_counted_per_traded_symbol(self, settings: Any) -> None:
        settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
        version = version_row(1, ModelVersion.State.ACTIVE)
        predictions(version, [None], [0.6])
        # the ML signal source meets an old prediction: ignored and counted, once
        for _ in range(2):
            view = ml_prediction_for_signal(
                symbol="BTCUSDT", at=T0 + timedelta(hours=1), max_age_seconds=120
            )
            assert view.prediction is None
        insights_refresh(now=NOW)

        shown = ml_insights()

        assert shown is not None
        assert shown["stale"] == ml_stale_counts()
        assert [row["count"] for row in shown["stale"]] == [
            stale_count(symbol) for symbol in settings.SYMBOLS
        ]
        assert shown["stale"] == [
            {"symbol": "BTCUSDT", "count": 1, "display": "1"},
            {"symbol": "ETHUSDT", "count": 0, "display": "0"},
        ]


# --- the registry and the recent predictions -----------------------------------------------------


class TestRegistryAndRecent:
    def test_the_registry_lists_versions_newest_first_with_walk_forward_scores(self) -> None:
        version_row(1, ModelVersion.State.RETIRED)
        version_row(2, ModelVersion.State.ACTIVE)
        version_row(3, metrics={"auc": None, "brier": 0.2411, "hit_rate": 0.5, "samples": 9})

        models = ml_models()

        assert [(m["version"], m["state"]) for m in models] == [
            (3, "shadow"),
            (2, "active"),
            (1, "retired"),
        ]
        assert models[0]["display"] == {"auc": NO_VALUE, "brier": "0.2411"}
        assert models[1]["display"] == {"auc": "0.551", "brier": "0.2488"}
        assert models[1]["algorithm_label"] == "logistic regression"
        assert models[1]["created_at"] == datetime(2026, 1, 2, 2, tzinfo=UTC).isoformat()

    def test_active_and_shadow_models_are_always_listed_however_many_were_retired(
        self, django_assert_num_queries: Any
    ) -> None:
        version_row(1, ModelVersion.State.ACTIVE)
        for number in range(2, MODELS_SHOWN + 6):
            version_row(number, ModelVersion.State.RETIRED)

        with django_assert_num_queries(1):
            models = ml_models()

        assert len(models) == MODELS_SHOWN
        assert models[-1]["version"] == 1
        assert models[0]["version"] == MODELS_SHOWN + 5

    def test_recent_predictions_filter_by_version_and_symbol_in_one_query(
        self, django_assert_num_queries: Any
    ) -> None:
        one, two = version_row(1), version_row(2)
        predictions(one, [1, 0, None], [0.6, 0.4, 0.5])
        predictions(two, [1, None], [0.3, 0.9], symbol="ETHUSDT")

        with django_assert_num_queries(1):
            everything = ml_predictions_recent()
        only_two = ml_predictions_recent(version=2)
        only_btc = ml_predictions_recent(symbol="BTCUSDT")

        assert len(everything) == 5
        assert [row["as_of"] for row in everything] == sorted(
            (row["as_of"] for row in everything), reverse=True
        )
        assert {row["version"] for row in only_two} == {2}
        assert [row["probability_display"] for row in only_two] == ["90.0%", "30.0%"]
        assert {row["symbol"] for row in only_btc} == {"BTCUSDT"}
        assert len(only_btc) == 3


# --- the page's context --------------------------------------------------------------------------


class TestContext:
    def test_the_insights_cost_two_queries_however_many_predictions_and_symbols(
        self, django_assert_num_queries: Any, settings: Any
    ) -> None:
        settings.SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
        version = version_row(1)
        scored_history(version, n=300)
        insights_refresh(now=NOW)

        with django_assert_num_queries(2):
            shown = ml_insights()

        assert shown is not None
        assert len(shown["recent"]) == 50

    def test_the_context_is_bounded_and_json_ready(
        self, django_assert_max_num_queries: Any
    ) -> None:
        version = version_row(1)
        scored_history(version, n=120)
        insights_refresh(now=NOW)

        with django_assert_max_num_queries(4):
            context = ml_insights_context("1")

        assert context["ml"] == ml_insights(1)
        assert context["ml_models"] == ml_models()
        assert (context["ml_requested"], context["ml_selected"]) == (1, 1)
        assert context["ml_problem"] == context["ml_empty"] == ""
        assert as_json(context) == context

    def test_a_bad_version_string_is_explained_and_the_default_model_shown(self) -> None:
        version_row(1)
        insights_refresh(now=NOW)

        context = ml_insights_context("<b>v1.5</b>")

        assert "“<b>v1.5</b>” is not a model version" in context["ml_problem"]
        assert context["ml"] is not None
        assert context["ml"]["version"] == 1
        assert context["ml_requested"] is None

    def test_an_unknown_version_is_explained_and_the_default_model_shown(self) -> None:
        version_row(1)
        insights_refresh(now=NOW)

        context = ml_insights_context("42")

        assert context["ml_problem"] == "There is no model v42: showing the default model."
        assert context["ml"] is not None
        assert context["ml"]["version"] == 1

    def test_a_version_not_computed_yet_stays_selected_with_the_reason(self) -> None:
        version_row(1)
        insights_refresh(now=NOW)
        version_row(2)

        context = ml_insights_context("2")

        assert context["ml"] is None
        assert (context["ml_requested"], context["ml_selected"]) == (2, 2)
        assert "insights of v2 are not computed yet" in context["ml_empty"]


# --- the API ------------------------------------------------------------------------------------


ENDPOINTS = {
    "api-ml-insights": "/api/v1/ml/insights/",
    "api-ml-models": "/api/v1/ml/models/",
    "api-ml-predictions-recent": "/api/v1/ml/predictions/recent/",
}


class TestApi:
    @pytest.mark.parametrize(("name", "url"), ENDPOINTS.items())
    def test_each_endpoint_has_its_name_and_path(self, name: str, url: str) -> None:
        assert reverse(name) == url
        assert reverse("api-ml-insights-version", args=[3]) == "/api/v1/ml/insights/3/"

    @pytest.mark.parametrize("url", [*ENDPOINTS.values(), "/api/v1/ml/insights/1/"])
    def test_anonymous_requests_are_refused(self, client: Client, url: str) -> None:
        version = version_row(1)
        predictions(version, [1], [0.9])
        insights_refresh(now=NOW)

        response = client.get(url)

        assert response.status_code in (401, 403)
        assert "probability" not in response.content.decode()

    def test_every_endpoint_serves_what_the_selectors_return(
        self, client: Client, viewer_user: User
    ) -> None:
        version_row(1, ModelVersion.State.ACTIVE)
        shadow = version_row(2)
        scored_history(shadow, n=150)
        insights_refresh(now=NOW)
        client.force_login(viewer_user)

        default = client.get("/api/v1/ml/insights/")
        second = client.get("/api/v1/ml/insights/2/")
        models = client.get("/api/v1/ml/models/")
        recent = client.get("/api/v1/ml/predictions/recent/?version=2&symbol=btcusdt")

        assert [r.status_code for r in (default, second, models, recent)] == [200] * 4
        assert default.json() == as_json(ml_insights())
        assert default.json()["version"] == 1
        assert second.json() == as_json(ml_insights(2))
        assert kpis(second.json()["live"])["samples"]["display"] == "150"
        assert models.json() == as_json(ml_models())
        assert recent.json() == as_json(ml_predictions_recent(version=2, symbol="BTCUSDT"))
        assert len(recent.json()) == 50

    def test_a_token_is_enough(self, client: Client, viewer_user: User) -> None:
        version_row(1)
        token = Token.objects.create(user=viewer_user)

        response = client.get("/api/v1/ml/models/", HTTP_AUTHORIZATION=f"Token {token.key}")

        assert response.status_code == 200
        assert [row["version"] for row in response.json()] == [1]

    def test_without_a_model_the_insights_are_a_404_that_says_how_to_train_one(
        self, client: Client, viewer_user: User
    ) -> None:
        client.force_login(viewer_user)

        response = client.get("/api/v1/ml/insights/")

        assert response.status_code == 404
        assert response.json()["detail"].startswith("No model trained yet.")
        assert "train_model" in response.json()["detail"]
        assert client.get("/api/v1/ml/models/").json() == []

    def test_insights_not_computed_yet_and_unknown_versions_are_404s(
        self, client: Client, viewer_user: User
    ) -> None:
        version_row(1)
        client.force_login(viewer_user)

        not_yet = client.get("/api/v1/ml/insights/1/")
        unknown = client.get("/api/v1/ml/insights/9/")

        assert not_yet.status_code == unknown.status_code == 404
        assert "insights of v1 are not computed yet" in not_yet.json()["detail"]
        assert unknown.json() == {"detail": "There is no model v9."}

    @pytest.mark.parametrize(
        ("query", "field", "message"),
        [
            ("version=abc", "version", "A valid integer is required."),
            ("version=0", "version", "Ensure this value is greater than or equal to 1."),
            ("version=9", "version", "there is no model v9"),
            ("symbol=DOGEUSDT", "symbol", "'DOGEUSDT' is not traded: one of BTCUSDT, ETHUSDT"),
        ],
    )
    def test_bad_filters_are_a_400_with_the_fields_message(
        self, client: Client, viewer_user: User, settings: Any, query: str, field: str, message: str
    ) -> None:
        settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
        version_row(1)
        client.force_login(viewer_user)

        response = client.get(f"/api/v1/ml/predictions/recent/?{query}")

        assert response.status_code == 400
        assert response.json() == {field: [message]}

    def test_the_endpoints_are_read_only(self, client: Client, operator_user: User) -> None:
        version_row(1)
        client.force_login(operator_user)

        response = client.post("/api/v1/ml/models/", {"version": 2})

        assert response.status_code == 405
        assert list(ModelVersion.objects.values_list("version", flat=True)) == [1]

    def test_the_endpoints_are_in_the_openapi_schema(
        self, client: Client, viewer_user: User
    ) -> None:
        client.force_login(viewer_user)

        schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

        for url in [*ENDPOINTS.values(), "/api/v1/ml/insights/{version}/"]:
            assert url in schema["paths"], url
        parameters = schema["paths"]["/api/v1/ml/predictions/recent/"]["get"]["parameters"]
        assert {p["name"] for p in parameters} == {"version", "symbol"}


# --- the page -----------------------------------------------------------------------------------


def page_of(client: Client, query: str = "") -> Page:
    response = client.get(f"/ml-insights/{query}")
    assert response.status_code == 200
    return Page(response.content.decode())


class TestPage:
    def test_a_viewer_sees_every_number_as_the_selector_formats_it(
        self, client: Client, viewer_user: User
    ) -> None:
        rng = np.random.default_rng(3)
        reference = insights.drift_reference(pd.DataFrame({"ret_1": rng.normal(0, 1, 2000)}))
        version = version_row(1, importance={"ret_1": 0.01, "rsi_14": 0.002}, reference=reference)
        scored_history(version, n=120)
        insights_refresh(now=NOW)
        shown = ml_insights()
        assert shown is not None
        client.force_login(viewer_user)

        page = page_of(client)

        assert page.one("h1").text == "ML Insights"
        assert page.one(id="state-badge").text == "shadow: not trading"
        assert page.one(id="state-badge").attrs["data-state"] == "shadow"
        for kpi in shown["live"] + shown["training"]:
            assert page.one("dd", data_kpi=kpi["key"]).text == kpi["display"], kpi["key"]
        rows = page.rows("recent-table")
        assert [row.attrs["data-id"] for row in rows] == [str(r["id"]) for r in shown["recent"]]
        probabilities = page.find_all("td", data_col="probability")
        assert [cell.text for cell in probabilities] == [
            r["probability_display"] for r in shown["recent"]
        ]
        outcomes = page.find_all("td", data_col="outcome")
        assert [cell.text for cell in outcomes] == [r["outcome_display"] for r in shown["recent"]]
        assert [cell.text for cell in page.find_all("td", data_col="importance")] == [
            "0.0100",
            "0.0020",
        ]
        assert page.one("tr", data_feature="ret_1", data_level="unknown")
        assert [row.attrs["data-symbol"] for row in page.rows("stale-table")] == [
            row["symbol"] for row in shown["stale"]
        ]
        assert [cell.text for cell in page.find_all("td", data_col="count")] == [
            row["display"] for row in shown["stale"]
        ]
        assert "hidden" not in page.one(id="promotion-card").attrs
        assert page.one(id="promotion-reason").text == shown["promotion"]["reason"]
        assert page.one(id="promotion-status").text == "stays in shadow"
        assert json.loads(page.one("script", id="ml-data").text) == as_json(shown)
        assert page.one("option", value="1").text.startswith("v1 · shadow · logistic regression")
        assert page.one("tr", data_version="1").attrs["aria-current"] == "true"

    def test_an_active_model_is_marked_trading_without_the_promotion_rule(
        self, client: Client, viewer_user: User
    ) -> None:
        version_row(1, ModelVersion.State.ACTIVE)
        insights_refresh(now=NOW)
        client.force_login(viewer_user)

        page = page_of(client)

        assert page.one(id="state-badge").text == "active: trading"
        assert "hidden" in page.one(id="promotion-card").attrs

    def test_a_bad_version_parameter_is_explained_on_the_page(
        self, client: Client, viewer_user: User
    ) -> None:
        version_row(1)
        insights_refresh(now=NOW)
        client.force_login(viewer_user)

        page = page_of(client, "?version=%3Cscript%3Ex%3C%2Fscript%3E")
        unknown = page_of(client, "?version=77")

        assert "is not a model version" in page.one(id="ml-problem").text
        assert "<script>x</script>" in page.one(id="ml-problem").text  # as text, escaped
        assert page.one("h2", id="model-title").text == "v1 · logistic regression"
        assert unknown.one(id="ml-problem").text == (
            "There is no model v77: showing the default model."
        )

    def test_a_script_in_a_feature_name_is_escaped(self, client: Client, viewer_user: User) -> None:
        version_row(1, importance={"<script>alert(1)</script>": 0.01})
        insights_refresh(now=NOW)
        client.force_login(viewer_user)

        html = client.get("/ml-insights/").content.decode()

        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_without_a_model_the_page_says_how_to_train_one(
        self, client: Client, viewer_user: User
    ) -> None:
        client.force_login(viewer_user)

        page = page_of(client)

        empty = page.one(id="ml-empty")
        assert "No model trained yet" in empty.text
        assert "python manage.py train_model" in empty.text
        assert not page.find_all(id="version-select")
        assert json.loads(page.one("script", id="ml-data").text) is None

    def test_a_selected_model_not_computed_yet_says_why(
        self, client: Client, viewer_user: User
    ) -> None:
        version_row(1)
        insights_refresh(now=NOW)
        version_row(2)
        client.force_login(viewer_user)

        page = page_of(client, "?version=2")

        assert "insights of v2 are not computed yet" in page.one(id="ml-empty-reason").text
        assert "selected" in page.one("option", value="2").attrs
        assert page.one(id="ml-tab").attrs["data-requested"] == "2"

    def test_anonymous_visitors_are_sent_to_log_in(self, client: Client) -> None:
        response = client.get("/ml-insights/")

        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
