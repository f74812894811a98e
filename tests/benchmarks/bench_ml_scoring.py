"""Benchmark: live scoring latency per symbol (issue 6, item 7).

Not a test: ``make bench`` calls ``run()`` with Django set up (PostgreSQL). One symbol's
bars are stored (two days of seeded 1-minute bars), a model is trained and registered in a
temporary MODEL_DIR, and ``predictions_score`` scores the newest bar again and again: read
the bars, compute the features, load the artifact (cached after the first call, as in a
worker), predict and store the prediction. Each round scores a bar not scored yet, so every
call writes its row. Baseline: the bare ``predict_proba`` of the same pipeline on one feature
row already in memory (the floor of any scoring). p50 and p95 of the per-call time are
reported; no goal (the issue asks for the figure).

Everything written is deleted at the end (bars, predictions, the model row and its file).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

SYMBOL = "BENCHMLUSDT"
BARS = 2 * 1440
ROUNDS = 60
SEED = 20261126


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def run() -> list[dict[str, object]]:
    from django.conf import settings

    from mlinsights.features import features
    from mlinsights.models import InsightCache, ModelVersion, Prediction
    from mlinsights.registry import artifact_cache_clear, artifact_load
    from mlinsights.services import model_train, predictions_score
    from routing.models import MarketBar
    from tests.mlinsights.markets import bars_store, close_time, market

    frame = market(planted=True, seed=SEED, n=BARS + ROUNDS)
    previous_dir = settings.MODEL_DIR
    others: list[tuple[int, str]] = []
    with tempfile.TemporaryDirectory() as directory:
        settings.MODEL_DIR = Path(directory)
        artifact_cache_clear()
        try:
            bars_store(frame, symbol=SYMBOL)
            version = model_train(
                symbols=[SYMBOL],
                start=close_time(frame, 0),
                end=close_time(frame, BARS - 1),
                algorithm="hist_gradient_boosting",
                horizon=15,
                folds=3,
            )
            # Only this model is scored (others a bench database may hold are set aside).
            others = list(
                ModelVersion.objects.exclude(pk=version.pk)
                .exclude(state=ModelVersion.State.RETIRED)
                .values_list("pk", "state")
            )
            ModelVersion.objects.filter(pk__in=[pk for pk, _ in others]).update(
                state=ModelVersion.State.RETIRED
            )
            model = artifact_load(
                name=version.artifact, sha256=version.artifact_sha256, features=version.features
            )
            row = features(frame.iloc[:BARS])[version.features].iloc[[-1]]
            model.predict_proba(row)  # warm-up
            scoring: list[float] = []
            floor: list[float] = []
            for i in range(ROUNDS):
                as_of = close_time(frame, BARS + i - 1)
                started = time.perf_counter()
                made = predictions_score(
                    symbol=SYMBOL, as_of=as_of, requested_at=as_of + timedelta(seconds=1)
                )
                scoring.append(time.perf_counter() - started)
                if len(made) != 1:
                    raise RuntimeError(f"expected one prediction at {as_of}, got {len(made)}")
                started = time.perf_counter()
                model.predict_proba(row)
                floor.append(time.perf_counter() - started)
            scoring = scoring[1:]  # the first call loads the artifact from disk
            floor = floor[1:]
        finally:
            Prediction.objects.filter(symbol=SYMBOL).delete()
            InsightCache.objects.filter(model_version__symbols=[SYMBOL]).delete()
            ModelVersion.objects.filter(symbols=[SYMBOL]).delete()
            for pk, state in others:
                ModelVersion.objects.filter(pk=pk).update(state=state)
            MarketBar.objects.filter(symbol=SYMBOL).delete()
            settings.MODEL_DIR = previous_dir
            artifact_cache_clear()
    p50, p95 = _percentile(scoring, 50), _percentile(scoring, 95)
    floor_p50 = statistics.median(floor)
    return [
        {
            "name": "ML scoring, one symbol (bars read, features, predict, row stored), p50",
            "seconds": round(p50, 6),
            "baseline_name": "bare predict_proba on one in-memory feature row, p50",
            "baseline_seconds": round(floor_p50, 6),
            "ratio": round(p50 / floor_p50, 3),
            "goal": "none (figure asked)",
            "met": True,
            "note": (
                f"ML scoring latency per symbol: p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms "
                f"over {len(scoring)} bars ({version.algorithm}, {len(version.features)} "
                f"features, {BARS} stored bars); the bare predict_proba floor is "
                f"{floor_p50 * 1e3:.2f} ms. The rest is reading the last bars from PostgreSQL "
                "and computing their features."
            ),
        }
    ]
