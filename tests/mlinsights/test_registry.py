"""The model registry in the database: train_model, artifacts and their hashes, the promotion
rule, admin actions, corrupt artifacts, outcomes, the ML signal source and the insights cache.

Everything runs for real: PostgreSQL, Redis, scikit-learn and joblib files in a temporary
MODEL_DIR; the end-to-end scoring test runs a real Celery worker on the ML queue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from doctor.models import Incident
from mlinsights import insights
from mlinsights.features import features as feature_rows
from mlinsights.models import InsightCache, MLConfig, ModelVersion, Prediction
from mlinsights.registry import (
    ArtifactInvalid,
    artifact_cache_clear,
    artifact_load,
    artifact_save,
)
from mlinsights.services import (
    ModelStateInvalid,
    insights_refresh,
    ml_prediction_for_signal,
    model_promote,
    model_retire,
    model_train,
    outcomes_backfill,
    predictions_prune,
    predictions_score,
    promotion_check,
    promotions_review,
    scoring_request,
    stale_count,
)
from mlinsights.training import TrainingInvalid, pipeline
from routing.models import MarketBar, Signal, SignalSource
from routing.signal_services import signal_sources_sync, signals_generate
from tests.conftest import Process, wait_for
from tests.mlinsights.markets import bars_store, close_time, market

BARS = 3_000
HORIZON = 5


@pytest.fixture(autouse=True)
def model_dir(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A MODEL_DIR of this test's own (every test here), for this process and any worker it
    starts."""
    directory = tmp_path / "models"
    settings.MODEL_DIR = directory
    monkeypatch.setenv("MODEL_DIR", str(directory))
    artifact_cache_clear()
    yield directory
    artifact_cache_clear()


@pytest.fixture
def planted_bars(db: None) -> Any:
    frame = market(planted=True, seed=11, n=BARS)
    bars_store(frame)
    return frame


def train(frame: Any, **options: Any) -> ModelVersion:
    return model_train(
        symbols=["BTCUSDT"],
        start=close_time(frame, 0),
        end=close_time(frame, len(frame) - 1),
        algorithm=options.pop("algorithm", "logistic_regression"),
        horizon=options.pop("horizon", HORIZON),
        folds=options.pop("folds", 3),
        **options,
    )


def version_row(number: int, state: str = ModelVersion.State.SHADOW) -> ModelVersion:
    """A registry row for the promotion rule (which reads predictions), with a small real
    artifact (promotion loads it) taking the one feature it lists."""
    rng = np.random.default_rng(number)
    model = pipeline("logistic_regression")
    model.fit(pd.DataFrame({"ret_1": rng.normal(size=50)}), rng.integers(0, 2, 50))
    name = f"test-v{number}.joblib"
    sha256 = artifact_save(model, name=name)
    return ModelVersion.objects.create(
        version=number,
        algorithm="logistic_regression",
        features=["ret_1"],
        symbols=["BTCUSDT"],
        horizon_bars=HORIZON,
        train_start=datetime(2026, 1, 1, tzinfo=UTC),
        train_end=datetime(2026, 1, 2, tzinfo=UTC),
        rows=1000,
        metrics={"auc": 0.5, "brier": 0.25, "hit_rate": 0.5, "samples": 10},
        artifact=name,
        artifact_sha256=sha256,
        state=state,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


def predictions(
    version: ModelVersion,
    outcomes: np.ndarray,
    probabilities: np.ndarray,
    *,
    every_minutes: int = HORIZON,
) -> None:
    """Resolved predictions of ``version``, one per horizon by default (so their outcomes do
    not overlap), on the same bars for every version."""
    start = datetime(2026, 2, 1, tzinfo=UTC)
    Prediction.objects.bulk_create(
        [
            Prediction(
                model_version=version,
                symbol="BTCUSDT",
                as_of=start + timedelta(minutes=i * every_minutes),
                horizon_bars=HORIZON,
                probability=float(p),
                close=Decimal(100),
                features={},
                requested_at=start + timedelta(minutes=i),
                scored_at=start + timedelta(minutes=i),
                latency_ms=1.0,
                outcome=float(y),
                resolved_at=start + timedelta(minutes=i + HORIZON),
            )
            for i, (y, p) in enumerate(zip(outcomes, probabilities, strict=True))
        ]
    )


class TestTrainModel:
    def test_the_command_registers_a_shadow_model_with_its_artifact_and_metrics(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        out = StringIO()
        call_command(
            "train_model",
            "--symbols=BTCUSDT",
            f"--start={close_time(planted_bars, 0).isoformat()}",
            f"--end={close_time(planted_bars, BARS - 1).isoformat()}",
            "--algorithm=logistic_regression",
            f"--horizon={HORIZON}",
            "--folds=3",
            stdout=out,
            stderr=StringIO(),
        )

        version = ModelVersion.objects.get()
        assert "registered model v1 in shadow" in out.getvalue()
        assert version.state == ModelVersion.State.SHADOW
        assert (version.algorithm, version.horizon_bars, version.symbols) == (
            "logistic_regression",
            HORIZON,
            ["BTCUSDT"],
        )
        artifact = model_dir / version.artifact
        assert hashlib.sha256(artifact.read_bytes()).hexdigest() == version.artifact_sha256
        # the planted momentum is found out of sample
        assert version.metrics["auc"] > 0.55
        assert version.metrics["samples"] > 1000
        assert set(version.feature_importance) == set(version.features)
        assert max(version.feature_importance, key=version.feature_importance.get) in {
            "ret_5",
            "ret_15",
            "macd",
            "macd_hist",
            "macd_signal",
            "rsi_14",
        }
        assert set(version.drift_reference) == set(version.features)
        # the window is the rows learned from: features complete, labels inside the window
        first_complete = feature_rows(planted_bars).dropna().index[0]
        assert version.train_start == first_complete.to_pydatetime()
        assert version.train_end == close_time(planted_bars, BARS - 1 - HORIZON)
        # the loaded artifact predicts probabilities for the registered features
        model = artifact_load(
            name=version.artifact, sha256=version.artifact_sha256, features=version.features
        )
        assert model.n_features_in_ == len(version.features)
        assert version.history.count() == 1

    def test_a_second_model_gets_the_next_version_and_its_own_file(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        first = train(planted_bars)
        second = train(planted_bars, algorithm="hist_gradient_boosting", folds=2)
        assert (first.version, second.version) == (1, 2)
        assert first.artifact != second.artifact
        assert len(list(model_dir.glob("*.joblib"))) == 2

    def test_only_the_newest_shadow_models_are_kept_scoring(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        active = train(planted_bars, folds=2)
        ModelVersion.objects.filter(pk=active.pk).update(state=ModelVersion.State.ACTIVE)
        for _ in range(4):
            train(planted_bars, folds=2)

        states = dict(ModelVersion.objects.values_list("version", "state"))
        assert states == {1: "active", 2: "retired", 3: "shadow", 4: "shadow", 5: "shadow"}
        assert "superseded" in ModelVersion.objects.get(version=2).state_reason

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--symbols=DOGEUSDT"], "not traded"),
            (["--days=0"], "--days must be at least 1"),
            (["--horizon=0", "--days=1"], "--horizon must be at least 1"),
            (["--start=yesterday"], "not an ISO date"),
            (["--start=2026-01-01", "--days=3"], "not both"),
            (["--seed=-1", "--days=1"], "--seed must be 0 or more"),
            (["--days=100000"], "--days must be at most 3650"),
            (["--days=1"], "no bars of BTCUSDT"),
        ],
    )
    def test_bad_input_is_refused_and_registers_nothing(
        self, model_dir: Path, db: None, arguments: list[str], message: str
    ) -> None:
        with pytest.raises(CommandError, match=message):
            call_command("train_model", *arguments, stdout=StringIO(), stderr=StringIO())
        assert not ModelVersion.objects.exists()
        assert not model_dir.exists() or not list(model_dir.iterdir())

    def test_too_few_bars_is_a_clear_training_error(self, model_dir: Path, db: None) -> None:
        frame = market(planted=False, seed=3, n=400)
        bars_store(frame)
        with pytest.raises(TrainingInvalid, match="at least 1000 are needed"):
            train(frame)
        assert not ModelVersion.objects.exists()


class TestArtifacts:
    def test_a_changed_file_is_refused_without_loading_it(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        version = train(planted_bars)
        artifact_cache_clear()
        path = model_dir / version.artifact
        path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
        with pytest.raises(ArtifactInvalid, match="the file changed since it was saved"):
            artifact_load(
                name=version.artifact, sha256=version.artifact_sha256, features=version.features
            )

    def test_a_missing_file_is_refused(self, model_dir: Path, planted_bars: Any) -> None:
        version = train(planted_bars)
        artifact_cache_clear()
        (model_dir / version.artifact).unlink()
        with pytest.raises(ArtifactInvalid, match="missing"):
            artifact_load(
                name=version.artifact, sha256=version.artifact_sha256, features=version.features
            )

    def test_a_corrupt_active_artifact_opens_an_incident_and_switches_the_ml_source_off(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        # given an active model whose file got corrupted, a healthy shadow model, and the ML
        # source switched on
        signal_sources_sync()
        active = train(planted_bars)
        shadow = train(planted_bars, folds=2)
        ModelVersion.objects.filter(pk=active.pk).update(state=ModelVersion.State.ACTIVE)
        artifact_cache_clear()
        (model_dir / active.artifact).write_bytes(b"not a pickle")
        as_of = close_time(planted_bars, BARS - 1)

        # when the bar is scored
        made = predictions_score(symbol="BTCUSDT", as_of=as_of, requested_at=as_of)

        # then the shadow model still scores, the broken one does not
        assert [p.model_version_id for p in made] == [shadow.pk]
        incident = Incident.objects.get(code=f"artifact-invalid-v{active.version}")
        assert incident.severity == Incident.Severity.CRITICAL
        assert incident.resolved_at is None
        assert "ML signal source is switched off" in incident.message
        assert not SignalSource.objects.get(name="ml").enabled
        # and the other sources keep trading
        assert SignalSource.objects.filter(name="momentum", enabled=True).exists()

    def test_a_corrupt_shadow_artifact_is_a_warning_and_the_ml_source_stays_on(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        signal_sources_sync()
        shadow = train(planted_bars)
        artifact_cache_clear()
        (model_dir / shadow.artifact).unlink()
        as_of = close_time(planted_bars, BARS - 1)

        assert predictions_score(symbol="BTCUSDT", as_of=as_of, requested_at=as_of) == []

        incident = Incident.objects.get(code=f"artifact-invalid-v{shadow.version}")
        assert incident.severity == Incident.Severity.WARNING
        assert SignalSource.objects.get(name="ml").enabled


class TestScoring:
    def test_a_bar_is_scored_once_per_model_with_the_training_features(
        self, model_dir: Path, planted_bars: Any
    ) -> None:
        version = train(planted_bars)
        as_of = close_time(planted_bars, BARS - 1)
        requested = as_of + timedelta(seconds=2)

        first = predictions_score(
            symbol="BTCUSDT", as_of=as_of, requested_at=requested, now=lambda: requested
        )
        again = predictions_score(symbol="BTCUSDT", as_of=as_of, requested_at=requested)

        assert again == []
        (prediction,) = first
        assert prediction.model_version == version
        assert 0 < prediction.probability < 1
        assert prediction.close == MarketBar.objects.get(close_time=as_of).close
        assert prediction.latency_ms == 0
        assert set(prediction.features) == set(version.features)
        # the stored probability is the model's on the features computed in training
        model = artifact_load(
            name=version.artifact, sha256=version.artifact_sha256, features=version.features
        )
        row = feature_rows(planted_bars).loc[[as_of], version.features]
        assert prediction.probability == pytest.approx(model.predict_proba(row)[0, 1], abs=1e-6)

    def test_nothing_is_queued_without_a_model(self, db: None) -> None:
        bars_store(market(planted=False, seed=1, n=10))
        assert scoring_request(symbols=["BTCUSDT"], at=datetime(2030, 1, 1, tzinfo=UTC)) == 0

    def test_scoring_end_to_end_through_a_real_celery_worker(
        self,
        model_dir: Path,
        transactional_db: None,
        celery_worker_process: Process,
    ) -> None:
        # given stored bars and a shadow model (the worker shares the test's MODEL_DIR)
        frame = market(planted=True, seed=11, n=BARS)
        bars_store(frame)
        version = train(frame)
        at = close_time(frame, BARS - 1) + timedelta(seconds=3)

        # when the executor's step asks for scoring on the ML queue (once per bar)
        assert scoring_request(symbols=["BTCUSDT"], at=at) == 1
        assert scoring_request(symbols=["BTCUSDT"], at=at) == 0

        # then the worker stores the prediction for the newest closed bar
        prediction = wait_for(
            lambda: Prediction.objects.filter(model_version=version).first(),
            timeout=90,
            what=lambda: f"a prediction; worker log:\n{celery_worker_process.log()}",
        )
        assert prediction.as_of == close_time(frame, BARS - 1)
        assert prediction.requested_at == at
        assert prediction.latency_ms > 0
        assert 0 < prediction.probability < 1


class TestPromotion:
    @pytest.fixture
    def outcomes(self) -> np.ndarray:
        return np.random.default_rng(5).integers(0, 2, 400).astype(float)

    def test_a_worse_or_equal_model_stays_in_shadow(self, db: None, outcomes: np.ndarray) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        equal, worse = version_row(2), version_row(3)
        skilled = np.where(outcomes == 1, 0.6, 0.4)
        predictions(active, outcomes, skilled)
        predictions(equal, outcomes, skilled)
        predictions(worse, outcomes, np.full(len(outcomes), 0.5))

        for candidate in (equal, worse):
            check = promotion_check(candidate)
            assert not check.passes
            assert check.samples == len(outcomes)
            with pytest.raises(ModelStateInvalid, match="stays in shadow"):
                model_promote(candidate, actor="olive")
            candidate.refresh_from_db()
            assert candidate.state == ModelVersion.State.SHADOW
        assert promotions_review() == []
        active.refresh_from_db()
        assert active.state == ModelVersion.State.ACTIVE

    def test_better_by_the_margin_promotes_and_retires_the_active_model(
        self, db: None, outcomes: np.ndarray
    ) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        better = version_row(2)
        predictions(active, outcomes, np.where(outcomes == 1, 0.55, 0.45))  # Brier 0.2025
        predictions(better, outcomes, np.where(outcomes == 1, 0.6, 0.4))  # Brier 0.16

        check = promotion_check(better)
        assert check.passes
        assert check.brier_candidate == pytest.approx(0.16)
        assert check.brier_incumbent == pytest.approx(0.2025)
        assert check.incumbent == "v1"

        assert promotions_review() == [better]
        better.refresh_from_db()
        active.refresh_from_db()
        assert better.state == ModelVersion.State.ACTIVE
        assert better.promoted_at is not None
        assert "the promotion rule" in better.state_reason
        assert active.state == ModelVersion.State.RETIRED
        assert "replaced by v2" in active.state_reason

    def test_better_by_less_than_the_margin_stays(self, db: None, outcomes: np.ndarray) -> None:
        MLConfig.objects.update_or_create(pk=1, defaults={"promotion_margin": 0.05})
        active = version_row(1, ModelVersion.State.ACTIVE)
        better = version_row(2)
        predictions(active, outcomes, np.where(outcomes == 1, 0.55, 0.45))
        predictions(better, outcomes, np.where(outcomes == 1, 0.6, 0.4))  # 0.0425 better

        assert not promotion_check(better).passes

    def test_too_few_shared_predictions_stay(self, db: None, outcomes: np.ndarray) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        better = version_row(2)
        predictions(active, outcomes[:50], np.full(50, 0.5))
        predictions(better, outcomes[:50], np.where(outcomes[:50] == 1, 0.9, 0.1))
        check = promotion_check(better)
        assert not check.passes
        assert check.samples == 50

    def test_overlapping_outcomes_count_once_per_horizon(self, db: None) -> None:
        # given 400 skilled predictions a minute apart over a 5-bar horizon: 80 independent
        outcomes = np.random.default_rng(5).integers(0, 2, 400).astype(float)
        skilled = version_row(1)
        predictions(skilled, outcomes, np.where(outcomes == 1, 0.7, 0.3), every_minutes=1)

        check = promotion_check(skilled)

        assert (check.samples, check.independent) == (400, 80)
        assert not check.passes  # 80 < the default 100
        assert "80 independent outcomes" in check.reason

    def test_models_with_different_horizons_are_never_compared(
        self, db: None, outcomes: np.ndarray
    ) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        other = version_row(2)
        other.horizon_bars = 1
        other.save()
        predictions(active, outcomes, np.full(len(outcomes), 0.5))
        predictions(other, outcomes, np.where(outcomes == 1, 0.9, 0.1))

        check = promotion_check(other)

        assert not check.passes
        assert "different questions" in check.reason

    def test_with_no_active_model_it_must_beat_the_base_rate(
        self, db: None, outcomes: np.ndarray
    ) -> None:
        # rows without a training base rate are measured against a coin flip
        noise = version_row(1)
        predictions(noise, outcomes, np.random.default_rng(9).uniform(0.3, 0.7, len(outcomes)))
        assert not promotion_check(noise).passes
        skilled = version_row(2)
        predictions(skilled, outcomes, np.where(outcomes == 1, 0.7, 0.3))
        check = promotion_check(skilled)
        assert check.passes
        assert check.incumbent == "base rate"
        assert check.brier_incumbent == pytest.approx(0.25)

    def test_the_base_rate_is_the_training_windows_not_the_live_outcomes(self, db: None) -> None:
        # given a model trained when 60 % of bars rose, live in a market that only fell
        candidate = version_row(1)
        candidate.metrics = {**candidate.metrics, "base_rate": 0.6}
        candidate.save()
        falls = np.zeros(300)
        predictions(candidate, falls, np.full(300, 0.2))

        check = promotion_check(candidate)

        # then it is measured against always forecasting 60 % (Brier 0.36), which it beats;
        # the live outcomes' own rate (0 %) would have been a perfect forecast in hindsight
        assert check.brier_incumbent == pytest.approx(0.36)
        assert check.brier_candidate == pytest.approx(0.04)
        assert check.passes

    def test_auto_promotion_can_be_switched_off(self, db: None, outcomes: np.ndarray) -> None:
        MLConfig.objects.update_or_create(pk=1, defaults={"auto_promote": False})
        skilled = version_row(1)
        predictions(skilled, outcomes, np.where(outcomes == 1, 0.7, 0.3))
        assert promotions_review() == []
        model_promote(skilled, actor="olive")
        skilled.refresh_from_db()
        assert skilled.state == ModelVersion.State.ACTIVE

    def test_a_model_whose_artifact_cannot_load_is_never_promoted(
        self, db: None, model_dir: Path, outcomes: np.ndarray
    ) -> None:
        skilled = version_row(1)
        predictions(skilled, outcomes, np.where(outcomes == 1, 0.7, 0.3))
        assert promotion_check(skilled).passes
        artifact_cache_clear()
        (model_dir / skilled.artifact).write_bytes(b"corrupted")

        with pytest.raises(ModelStateInvalid, match="artifact cannot be used"):
            model_promote(skilled, actor="olive")
        assert promotions_review() == []
        skilled.refresh_from_db()
        assert skilled.state == ModelVersion.State.SHADOW

    def test_retire_needs_a_reason_and_stops_an_active_model(self, db: None) -> None:
        active = version_row(1, ModelVersion.State.ACTIVE)
        with pytest.raises(ModelStateInvalid, match="say why"):
            model_retire(active, actor="olive", reason="  ")
        model_retire(active, actor="olive", reason="drifted")
        active.refresh_from_db()
        assert active.state == ModelVersion.State.RETIRED
        assert active.state_reason == "retired by olive: drifted"
        with pytest.raises(ModelStateInvalid, match="already retired"):
            model_retire(active, actor="olive", reason="again")


class TestAdmin:
    def test_an_operator_promotes_only_a_model_that_passes(
        self, client: Client, operator_user: User, db: None
    ) -> None:
        outcomes = np.random.default_rng(5).integers(0, 2, 300).astype(float)
        unproven, proven = version_row(1), version_row(2)
        predictions(unproven, outcomes, np.full(300, 0.5))
        predictions(proven, outcomes, np.where(outcomes == 1, 0.7, 0.3))
        operator_user.is_staff = True
        operator_user.save()
        client.force_login(operator_user)
        url = reverse("admin:mlinsights_modelversion_changelist")

        def promote(version: ModelVersion) -> str:
            response = client.post(
                url,
                {
                    "action": "model_promote",
                    "_selected_action": [version.pk],
                    "confirm": "yes",
                    "reason": "checked the tab",
                },
                follow=True,
            )
            return response.content.decode()

        assert "stays in shadow" in promote(unproven)
        unproven.refresh_from_db()
        assert unproven.state == ModelVersion.State.SHADOW
        assert "is now active" in promote(proven)
        proven.refresh_from_db()
        assert proven.state == ModelVersion.State.ACTIVE
        assert "olive (checked the tab)" in proven.state_reason
        recorded = proven.history.first().history_change_reason
        assert proven.state_reason.startswith(recorded.rstrip("…"))
        assert recorded.startswith("promoted by olive")

    def test_a_viewer_cannot_promote(self, client: Client, viewer_user: User, db: None) -> None:
        version = version_row(1)
        viewer_user.is_staff = True
        viewer_user.save()
        client.force_login(viewer_user)
        client.post(
            reverse("admin:mlinsights_modelversion_changelist"),
            {
                "action": "model_promote",
                "_selected_action": [version.pk],
                "confirm": "yes",
                "reason": "x",
            },
        )
        version.refresh_from_db()
        assert version.state == ModelVersion.State.SHADOW


class TestOutcomes:
    def test_each_prediction_gets_the_move_over_its_horizon_once_the_horizon_passed(
        self, db: None
    ) -> None:
        frame = market(planted=False, seed=2, n=40)
        bars_store(frame.iloc[:30])
        version = version_row(1)
        made = []
        for i in (10, 24, 29):
            made.append(
                Prediction.objects.create(
                    model_version=version,
                    symbol="BTCUSDT",
                    as_of=close_time(frame, i),
                    horizon_bars=HORIZON,
                    probability=0.5,
                    close=MarketBar.objects.get(close_time=close_time(frame, i)).close,
                    features={},
                    requested_at=close_time(frame, i),
                    scored_at=close_time(frame, i),
                    latency_ms=1,
                )
            )

        assert outcomes_backfill(now=close_time(frame, 29)) == 2

        def stored(i: int) -> float:
            return float(MarketBar.objects.get(close_time=close_time(frame, i)).close)

        for prediction, i in zip(made[:2], (10, 24), strict=True):
            prediction.refresh_from_db()
            expected = np.log(stored(i + HORIZON) / stored(i))
            assert prediction.outcome_return == pytest.approx(expected)
            assert prediction.outcome == (1.0 if expected > 0 else 0.0)
        made[2].refresh_from_db()
        assert made[2].outcome is None  # its horizon ends after the newest bar

        bars_store(frame.iloc[30:])
        assert outcomes_backfill(now=close_time(frame, 39)) == 1
        assert outcomes_backfill(now=close_time(frame, 39)) == 0

    def test_no_move_or_a_missing_bar_resolves_the_prediction_void(self, db: None) -> None:
        frame = market(planted=False, seed=2, n=20)
        still = frame.index[7:9]  # the close comes back to bar 2's: no move over 5 bars
        frame.loc[still, "close"] = float(frame["close"].iloc[2])
        frame.loc[still, "high"] = frame.loc[still, ["high", "close"]].max(axis=1)
        frame.loc[still, "low"] = frame.loc[still, ["low", "close"]].min(axis=1)
        bars_store(frame.drop(frame.index[15]))  # and a gap where one target bar should be
        version = version_row(1)

        def predicted(i: int) -> Prediction:
            return Prediction.objects.create(
                model_version=version,
                symbol="BTCUSDT",
                as_of=close_time(frame, i),
                horizon_bars=HORIZON,
                probability=0.5,
                close=MarketBar.objects.get(close_time=close_time(frame, i)).close,
                features={},
                requested_at=close_time(frame, i),
                scored_at=close_time(frame, i),
                latency_ms=1,
            )

        flat, gap, moved = predicted(2), predicted(10), predicted(11)

        assert outcomes_backfill(now=close_time(frame, 19)) == 3

        for void in (flat, gap):
            void.refresh_from_db()
            assert void.resolved_at is not None
            assert void.outcome is None
        moved.refresh_from_db()
        assert moved.outcome in (0.0, 1.0)
        # void predictions are resolved once and never scored
        assert outcomes_backfill(now=close_time(frame, 19)) == 0
        assert Prediction.objects.filter(outcome__isnull=False).count() == 1

    def test_old_predictions_are_pruned_unless_a_signal_was_made_from_them(self, db: None) -> None:
        version = version_row(1)
        now = datetime(2026, 6, 1, tzinfo=UTC)

        def predicted(age: timedelta) -> Prediction:
            return Prediction.objects.create(
                model_version=version,
                symbol="BTCUSDT",
                as_of=now - age,
                horizon_bars=HORIZON,
                probability=0.6,
                close=Decimal(100),
                features={},
                requested_at=now - age,
                scored_at=now - age,
                latency_ms=1,
            )

        old, traded, recent = (
            predicted(timedelta(days=31)),
            predicted(timedelta(days=40)),
            (predicted(timedelta(days=29))),
        )
        Signal.objects.create(
            created_at=traded.as_of,
            source="ml",
            symbol="BTCUSDT",
            side="BUY",
            strength=Decimal("0.2"),
            prediction=traded,
        )

        assert predictions_prune(now=now) == 1

        assert set(Prediction.objects.values_list("pk", flat=True)) == {traded.pk, recent.pk}
        assert not Prediction.objects.filter(pk=old.pk).exists()


class TestMLSignal:
    def _active_prediction(self, frame: Any, *, i: int, probability: float) -> Prediction:
        version = ModelVersion.objects.filter(state="active").first() or version_row(
            1, ModelVersion.State.ACTIVE
        )
        return Prediction.objects.create(
            model_version=version,
            symbol="BTCUSDT",
            as_of=close_time(frame, i),
            horizon_bars=HORIZON,
            probability=probability,
            close=MarketBar.objects.get(close_time=close_time(frame, i)).close,
            features={},
            requested_at=close_time(frame, i),
            scored_at=close_time(frame, i),
            latency_ms=1,
        )

    def test_a_fresh_prediction_of_the_active_model_makes_one_signal(self, db: None) -> None:
        signal_sources_sync()
        SignalSource.objects.exclude(name="ml").update(enabled=False)
        frame = market(planted=False, seed=4, n=20)
        bars_store(frame)
        prediction = self._active_prediction(frame, i=19, probability=0.8)
        at = close_time(frame, 19) + timedelta(seconds=10)

        (signal,) = signals_generate(symbol="BTCUSDT", at=at)
        assert signals_generate(symbol="BTCUSDT", at=at + timedelta(seconds=5)) == []

        assert (signal.source, signal.side, signal.strength) == ("ml", "BUY", Decimal("0.6"))
        assert signal.prediction == prediction
        assert signal.decision_price == prediction.close

    def test_a_shadow_models_prediction_never_trades(self, db: None) -> None:
        signal_sources_sync()
        frame = market(planted=False, seed=4, n=20)
        bars_store(frame)
        shadow = version_row(1)
        Prediction.objects.create(
            model_version=shadow,
            symbol="BTCUSDT",
            as_of=close_time(frame, 19),
            horizon_bars=HORIZON,
            probability=0.99,
            close=Decimal(100),
            features={},
            requested_at=close_time(frame, 19),
            scored_at=close_time(frame, 19),
            latency_ms=1,
        )
        at = close_time(frame, 19) + timedelta(seconds=10)
        assert not Signal.objects.filter(source="ml").exists()
        signals_generate(symbol="BTCUSDT", at=at)
        assert not Signal.objects.filter(source="ml").exists()

    def test_a_stale_prediction_is_ignored_and_counted_once(self, db: None) -> None:
        signal_sources_sync()
        frame = market(planted=False, seed=4, n=20)
        bars_store(frame)
        self._active_prediction(frame, i=10, probability=0.9)
        before = stale_count("BTCUSDT")
        at = close_time(frame, 10) + timedelta(seconds=91)

        view = ml_prediction_for_signal(symbol="BTCUSDT", at=at, max_age_seconds=90)
        again = ml_prediction_for_signal(symbol="BTCUSDT", at=at, max_age_seconds=90)

        assert view.prediction is None
        assert again.prediction is None
        assert "91 s old" in view.reason
        assert stale_count("BTCUSDT") == before + 1
        signals_generate(symbol="BTCUSDT", at=at)
        assert not Signal.objects.filter(source="ml").exists()

    def test_a_used_prediction_is_not_counted_stale_when_it_ages(self, db: None) -> None:
        signal_sources_sync()
        frame = market(planted=False, seed=4, n=20)
        bars_store(frame)
        self._active_prediction(frame, i=19, probability=0.8)
        at = close_time(frame, 19) + timedelta(seconds=5)
        assert len(signals_generate(symbol="BTCUSDT", at=at)) >= 1

        later = ml_prediction_for_signal(
            symbol="BTCUSDT", at=at + timedelta(minutes=10), max_age_seconds=90
        )

        assert later.prediction is None
        assert "already made its signal" in later.reason
        assert stale_count("BTCUSDT") == 0

    def test_an_ml_failure_costs_only_the_ml_signal(
        self, db: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given the ML lookup failing unexpectedly (injected: a real database fault cannot be
        # provoked in one query here), and a classical source with a view
        signal_sources_sync()
        SignalSource.objects.filter(name="mean_reversion").update(params={"window": 20})
        frame = market(planted=False, seed=4, n=40)
        last = frame.index[-1]  # the last close jumps 5 %: far outside the 20-bar band
        frame.loc[last, "close"] = float(frame["close"].iloc[-1]) * 1.05
        frame.loc[last, "high"] = frame.loc[last, "close"]
        bars_store(frame)

        def broken(**kwargs: Any) -> None:
            raise RuntimeError("the ML tables are unreachable")

        monkeypatch.setattr("routing.signal_services.ml_prediction_for_signal", broken)

        made = signals_generate(symbol="BTCUSDT", at=close_time(frame, 39))

        assert [signal.source for signal in made] == ["mean_reversion"]

    def test_a_prediction_inside_the_min_edge_makes_no_signal(self, db: None) -> None:
        signal_sources_sync()
        frame = market(planted=False, seed=4, n=20)
        bars_store(frame)
        self._active_prediction(frame, i=19, probability=0.52)
        signals_generate(symbol="BTCUSDT", at=close_time(frame, 19) + timedelta(seconds=5))
        assert not Signal.objects.filter(source="ml").exists()


class TestInsights:
    def test_the_cache_holds_the_live_scores_of_each_model(self, db: None) -> None:
        outcomes = np.random.default_rng(5).integers(0, 2, 300).astype(float)
        probabilities = np.clip(
            outcomes * 0.3 + 0.35 + np.random.default_rng(6).normal(0, 0.1, 300), 0, 1
        )
        version = version_row(1)
        predictions(version, outcomes, probabilities)

        (cache,) = insights_refresh(now=datetime(2026, 2, 1, 6, tzinfo=UTC))

        expected = insights.summary(outcomes, probabilities)
        assert cache == InsightCache.objects.get(model_version=version)
        assert cache.data["live"]["brier"] == pytest.approx(expected["brier"])
        assert cache.data["live"]["samples"] == 300
        assert sum(row["count"] for row in cache.data["calibration"]) == 300
        # 300 predictions: a rolling window of a quarter of them (75), so the curve has points
        assert cache.data["curves"]["window"] == 75
        assert len(cache.data["curves"]["hit_rate"]) == 300 - 75 + 1
        assert cache.data["curves"]["hit_rate"][-1] == pytest.approx(
            float(((probabilities[-75:] > 0.5) == (outcomes[-75:] == 1)).mean())
        )
        assert cache.data["promotion"]["incumbent"] == "base rate"
        assert cache.data["pending"] == 0


class TestExecutorScoringStep:
    @pytest.fixture(autouse=True)
    def paper(self, settings: Any, global_limits: Any) -> None:
        settings.VENUE = "paper"
        settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
        signal_sources_sync()

    def test_a_tick_queues_scoring_once_per_symbol_and_closed_bar(self, db: None) -> None:
        from routing.tasks import executor_run_once

        t0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
        # without a model to score with, nothing is queued
        first = executor_run_once(now=t0)
        assert first is not None
        assert first["scoring_queued"] == 0

        version_row(1)
        with_model = executor_run_once(now=t0 + timedelta(seconds=10))
        same_bar = executor_run_once(now=t0 + timedelta(seconds=20))
        next_bar = executor_run_once(now=t0 + timedelta(minutes=1))

        assert with_model is not None
        assert same_bar is not None
        assert next_bar is not None
        assert (with_model["scoring_queued"], same_bar["scoring_queued"]) == (2, 0)
        assert next_bar["scoring_queued"] == 2


class TestScheduledRetrain:
    def test_the_daily_retrain_registers_a_shadow_model_and_never_runs_twice_at_once(
        self, db: None, settings: Any
    ) -> None:
        from mlinsights.tasks import TRAIN_LOCK, model_retrain_task
        from tradingsite.locks import single_flight

        settings.SYMBOLS = ["BTCUSDT"]
        recent = datetime.now(UTC) - timedelta(minutes=BARS + 5)  # bars of the last ~2 days
        frame = market(planted=True, seed=11, n=BARS, start=f"{recent:%Y-%m-%d %H:%M}")
        bars_store(frame)
        MLConfig.objects.update_or_create(pk=1, defaults={"training_days": 3, "folds": 2})

        # while another training holds the lock, the scheduled one is skipped
        with single_flight(TRAIN_LOCK, ttl_seconds=60) as held:
            assert held.acquired
            model_retrain_task()
        assert not ModelVersion.objects.exists()

        model_retrain_task()  # the task body, run here (the worker runs the same code)

        version = ModelVersion.objects.get()
        assert version.state == ModelVersion.State.SHADOW
        assert version.symbols == ["BTCUSDT"]
        assert version.rows > 1000
