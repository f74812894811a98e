"""The ML Insights aggregates: drift (PSI), calibration, rolling scores, the summary and the
promotion rule, each against a hand computation or a naive reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlinsights.insights import (
    PSI_EPSILON,
    PSI_MIN_SAMPLES,
    calibration,
    drift_level,
    drift_reference,
    promotion_decision,
    psi,
    rolling_scores,
    summary,
)
from mlinsights.training import metrics


def outcomes_and_probabilities(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p).astype(float)
    return y, p


class TestDriftReference:
    def test_it_keeps_inner_quantile_edges_and_the_share_of_rows_per_bin(self) -> None:
        x = pd.DataFrame({"a": [*np.arange(1.0, 101.0), np.nan], "b": np.zeros(101)})

        reference = drift_reference(x, bins=4)

        # quantiles of 1..100 at 1/4, 2/4, 3/4 (linear interpolation); the NaN row ignored
        assert reference["a"]["edges"] == pytest.approx([25.75, 50.5, 75.25])
        assert reference["a"]["fractions"] == pytest.approx([0.25, 0.25, 0.25, 0.25])
        assert json.loads(json.dumps(reference)) == reference

    def test_tied_edges_are_merged_and_a_value_on_an_edge_counts_in_the_bin_above(self) -> None:
        x = pd.DataFrame({"flat": np.full(50, 3.0), "empty": np.full(50, np.nan)})

        reference = drift_reference(x)

        assert reference["flat"] == {"edges": [3.0], "fractions": [0.0, 1.0]}
        assert reference["empty"] == {"edges": [], "fractions": []}


class TestPsi:
    def test_the_same_distribution_scores_about_zero(self) -> None:
        rng = np.random.default_rng(1)
        train = pd.DataFrame({"a": rng.normal(0, 1, 50_000), "b": rng.gamma(2, 1, 50_000)})
        reference = drift_reference(train)
        fresh = pd.DataFrame({"a": rng.normal(0, 1, 20_000), "b": rng.gamma(2, 1, 20_000)})

        assert psi(reference, train) == pytest.approx({"a": 0.0, "b": 0.0}, abs=1e-12)
        scores = psi(reference, fresh)
        assert all(score is not None and 0 <= score < 0.01 for score in scores.values())
        assert {drift_level(score) for score in scores.values()} == {"stable"}

    def test_a_shifted_distribution_scores_significant(self) -> None:
        rng = np.random.default_rng(2)
        reference = drift_reference(pd.DataFrame({"a": rng.normal(0, 1, 50_000)}))

        score = psi(reference, pd.DataFrame({"a": rng.normal(1, 1, 5_000)}))["a"]

        assert score is not None
        assert score > 0.25
        assert drift_level(score) == "significant"

    def test_a_small_example_by_hand(self) -> None:
        reference = {"a": {"edges": [0.0], "fractions": [0.5, 0.5]}}
        # a quarter below the edge, three quarters on it (on an edge counts in the bin above)
        live = pd.DataFrame({"a": [-1.0] * 75 + [0.0] * 225})

        score = psi(reference, live)["a"]

        assert score == pytest.approx(
            (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
        )

    def test_an_empty_bin_is_floored_at_epsilon_on_either_side(self) -> None:
        halves = {"a": {"edges": [0.0], "fractions": [0.5, 0.5]}}
        all_above = {"a": {"edges": [0.0], "fractions": [0.0, 1.0]}}

        emptied = psi(halves, pd.DataFrame({"a": np.ones(400)}))["a"]
        filled = psi(all_above, pd.DataFrame({"a": [-1.0] * 200 + [1.0] * 200}))["a"]

        assert emptied == pytest.approx(
            (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5) + 0.5 * math.log(1 / 0.5)
        )
        assert filled == pytest.approx(
            (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON) - 0.5 * math.log(0.5)
        )

    def test_it_gives_none_without_enough_live_values_or_a_reference(self) -> None:
        reference = drift_reference(pd.DataFrame({"a": np.arange(1000.0), "gone": np.ones(1000)}))
        short = np.arange(PSI_MIN_SAMPLES, dtype=float)
        short[0] = np.nan  # missing values do not count
        live = pd.DataFrame({"a": short, "new": np.arange(PSI_MIN_SAMPLES, dtype=float)})

        scores = psi(reference, live)

        assert scores == {"a": None, "gone": None, "new": None}
        assert drift_level(scores["a"]) == "unknown"
        assert psi(reference, live.fillna(5.0))["a"] is not None

    @pytest.mark.parametrize(
        ("value", "level"),
        [
            (None, "unknown"),
            (float("nan"), "unknown"),
            (0.0, "stable"),
            (0.099, "stable"),
            (0.1, "moderate"),
            (0.249, "moderate"),
            (0.25, "significant"),
            (2.0, "significant"),
        ],
    )
    def test_drift_levels_follow_the_conventional_thresholds(
        self, value: float | None, level: str
    ) -> None:
        assert drift_level(value) == level

    @pytest.mark.parametrize(
        "bins",
        [
            {"edges": [0.0, 1.0], "fractions": [0.5, 0.5]},
            {"edges": [1.0, 0.0], "fractions": [0.2, 0.3, 0.5]},
            {"edges": [0.0], "fractions": [0.5, 0.6]},
            {"fractions": [1.0]},
        ],
    )
    def test_a_malformed_reference_is_refused(self, bins: dict[str, list[float]]) -> None:
        with pytest.raises(ValueError, match="reference"):
            psi({"a": bins}, pd.DataFrame({"a": np.ones(PSI_MIN_SAMPLES)}))


class TestCalibration:
    def test_bins_match_training_metrics_and_counts_sum_to_n(self) -> None:
        y, p = outcomes_and_probabilities(5_000, seed=3)
        p[:3] = [0.0, 1.0, 0.5]

        bins = calibration(y, p)

        assert sum(b["count"] for b in bins) == len(y)
        expected = metrics(y, p).calibration
        assert [(b["mean_predicted"], b["observed_frequency"], b["count"]) for b in bins] == [
            pytest.approx(row) for row in expected
        ]

    def test_only_non_empty_bins_by_hand(self) -> None:
        bins = calibration([0, 1, 1, 1], [0.05, 0.07, 0.95, 1.0])

        assert bins == [
            {"mean_predicted": pytest.approx(0.06), "observed_frequency": 0.5, "count": 2},
            {"mean_predicted": pytest.approx(0.975), "observed_frequency": 1.0, "count": 2},
        ]


class TestRollingScores:
    @pytest.mark.parametrize("window", [1, 7, 250])
    def test_they_equal_a_naive_loop_over_trailing_windows(self, window: int) -> None:
        y, p = outcomes_and_probabilities(2_000, seed=window)
        p[::10] = 0.5  # on the fence: predicts "not up"

        hit_rate, brier = rolling_scores(y, p, window)

        expected_hits = np.full(len(y), np.nan)
        expected_brier = np.full(len(y), np.nan)
        for end in range(window, len(y) + 1):
            ys, ps = y[end - window : end], p[end - window : end]
            expected_hits[end - 1] = np.mean(
                [(q > 0.5) == (o == 1) for q, o in zip(ps, ys, strict=True)]
            )
            expected_brier[end - 1] = (
                sum((q - o) ** 2 for q, o in zip(ps, ys, strict=True)) / window
            )
        np.testing.assert_allclose(hit_rate, expected_hits, rtol=0, atol=1e-12)
        np.testing.assert_allclose(brier, expected_brier, rtol=0, atol=1e-12)

    def test_a_window_longer_than_the_predictions_gives_no_score(self) -> None:
        hit_rate, brier = rolling_scores([1, 0], [0.9, 0.2], 3)
        assert np.isnan(hit_rate).all()
        assert np.isnan(brier).all()


class TestSummary:
    def test_the_climatology_forecast_has_zero_skill(self) -> None:
        y, _ = outcomes_and_probabilities(3_000, seed=4)

        result = summary(y, np.full(len(y), y.mean()))

        assert result["brier_skill"] == pytest.approx(0.0, abs=1e-12)
        assert result["brier"] == pytest.approx(result["climatology_brier"])

    def test_scores_against_sklearn_and_by_hand(self) -> None:
        y, p = outcomes_and_probabilities(3_000, seed=5)
        p = np.round(p, 2)  # ties, which AUC counts as half

        result = summary(y, p)

        brier = np.mean((p - y) ** 2)
        assert result["samples"] == 3_000
        assert result["brier"] == pytest.approx(brier)
        assert result["hit_rate"] == pytest.approx(np.mean((p > 0.5) == (y == 1)))
        assert result["auc"] == pytest.approx(roc_auc_score(y, p))
        assert result["base_rate"] == pytest.approx(y.mean())
        climatology = y.mean() * (1 - y.mean())
        assert result["climatology_brier"] == pytest.approx(climatology)
        assert result["brier_skill"] == pytest.approx(1 - brier / climatology)
        assert result["brier_skill"] is not None
        assert result["brier_skill"] > 0.2  # these probabilities are informative

    def test_one_class_has_no_auc_and_no_skill(self) -> None:
        result = summary([1, 1, 1], [0.9, 0.6, 0.4])

        assert result["auc"] is None
        assert result["brier_skill"] is None
        assert result["hit_rate"] == pytest.approx(2 / 3)
        assert result["brier"] == pytest.approx((0.01 + 0.16 + 0.36) / 3)


class TestPromotion:
    @pytest.mark.parametrize(
        ("candidate", "incumbent", "samples", "promoted"),
        [
            (0.2600, 0.2500, 1_000, False),  # worse
            (0.2500, 0.2500, 1_000, False),  # equal
            (0.2480, 0.2500, 1_000, False),  # better, by less than the margin
            (0.2440, 0.2500, 1_000, True),  # better by more than the margin
            (0.2000, 0.2500, 199, False),  # far better, too few samples
            (0.2000, 0.2500, 200, True),  # ... with just enough
        ],
    )
    def test_it_promotes_only_a_candidate_better_by_the_margin_on_enough_samples(
        self, candidate: float, incumbent: float, samples: int, promoted: bool
    ) -> None:
        decision, reason = promotion_decision(
            candidate, incumbent, samples, margin=0.005, min_samples=200
        )

        assert decision is promoted
        assert f"{candidate:.4f}" in reason
        assert f"{incumbent:.4f}" in reason
        assert reason.startswith("promoted" if promoted else "kept the incumbent")

    def test_without_a_margin_equal_still_keeps_the_incumbent(self) -> None:
        assert promotion_decision(0.25, 0.25, 500, margin=0.0, min_samples=1)[0] is False
        assert promotion_decision(0.2499, 0.25, 500, margin=0.0, min_samples=1)[0] is True

    def test_nonsense_scores_and_settings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="Brier score"):
            promotion_decision(float("nan"), 0.25, 500, margin=0.0, min_samples=1)
        with pytest.raises(ValueError, match="margin"):
            promotion_decision(0.2, 0.25, 500, margin=-0.01, min_samples=1)
        with pytest.raises(ValueError, match="min_samples"):
            promotion_decision(0.2, 0.25, 500, margin=0.0, min_samples=0)


class TestValidation:
    @pytest.mark.parametrize(
        ("y", "p", "message"),
        [
            ([0, 1], [0.5], "as many outcomes as probabilities"),
            ([0, 1], [0.5, 1.2], r"probabilities must be in \[0, 1\]"),
            ([0, 1], [0.5, np.nan], r"probabilities must be in \[0, 1\]"),
            ([0, 2], [0.5, 0.5], "outcomes must be 0 or 1"),
            ([[0, 1]], [[0.5, 0.5]], "one-dimensional"),
        ],
    )
    def test_bad_outcomes_or_probabilities_are_refused_everywhere(
        self, y: list[float], p: list[float], message: str
    ) -> None:
        for aggregate in (calibration, summary, lambda y, p: rolling_scores(y, p, 1)):
            with pytest.raises(ValueError, match=message):
                aggregate(y, p)

    def test_a_window_under_one_prediction_is_refused(self) -> None:
        with pytest.raises(ValueError, match="window must be >= 1"):
            rolling_scores([0, 1], [0.5, 0.5], 0)

    def test_no_predictions_give_no_summary_and_too_few_bins_no_reference(self) -> None:
        with pytest.raises(ValueError, match="at least one prediction"):
            summary([], [])
        with pytest.raises(ValueError, match="at least 2 bins"):
            drift_reference(pd.DataFrame({"a": [1.0, 2.0]}), bins=1)
