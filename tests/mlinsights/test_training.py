"""Training: labels, walk-forward without leakage, and models that find real signal and none
in noise (20,000 seeded bars each)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlinsights.features import FEATURES, features
from mlinsights.training import (
    TrainingInvalid,
    labels,
    metrics,
    pipeline,
    walk_forward,
)
from tests.mlinsights.markets import market

HORIZON = 5


def dataset(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    x = features(frame)[list(FEATURES)]
    y = labels(frame["close"], horizon=HORIZON)
    rows = x.notna().all(axis=1) & y.notna()
    return x[rows], y[rows]


@pytest.mark.parametrize("algorithm", ["logistic_regression", "hist_gradient_boosting"])
def test_a_planted_signal_is_found_out_of_sample(algorithm: str) -> None:
    x, y = dataset(market(planted=True, seed=11))
    result = walk_forward(x, y, algorithm=algorithm, folds=4, gap=HORIZON)
    assert result.metrics.auc >= 0.60
    assert result.metrics.hit_rate > 0.55
    # every prediction is out of sample: none for the first block
    assert result.predictions.index.min() >= x.index[len(x) // 5]
    assert len(result.predictions) < len(x) * 0.81


def test_noise_gives_a_coin_flip_out_of_sample() -> None:
    x, y = dataset(market(planted=False, seed=12))
    result = walk_forward(x, y, algorithm="logistic_regression", folds=4, gap=HORIZON)
    assert abs(result.metrics.auc - 0.5) <= 0.03


def test_labels_look_horizon_bars_ahead_and_stop_at_the_end() -> None:
    close = pd.Series([10.0, 11.0, 10.5, 10.5, 12.0])
    assert labels(close, horizon=2).tolist()[:3] == [1.0, 0.0, 1.0]
    assert labels(close, horizon=2).iloc[-2:].isna().all()
    with pytest.raises(TrainingInvalid, match="horizon"):
        labels(close, horizon=0)


def test_metrics_against_sklearn_and_by_hand() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 1000)
    y = (rng.uniform(0, 1, 1000) < p).astype(float)
    m = metrics(y, p)
    assert m.auc == pytest.approx(roc_auc_score(y, p))
    assert m.brier == pytest.approx(np.mean((p - y) ** 2))
    assert m.hit_rate == pytest.approx(np.mean((p > 0.5) == (y == 1)))
    assert sum(count for _, _, count in m.calibration) == 1000
    for predicted, observed, count in m.calibration:
        assert count > 0
        assert abs(predicted - observed) < 0.15  # calibrated by construction


def test_bad_settings_and_data_are_refused() -> None:
    with pytest.raises(TrainingInvalid, match="unknown algorithm"):
        pipeline("magic")
    x = pd.DataFrame({"a": np.arange(100.0)})
    y = pd.Series(np.arange(100) % 2, dtype=float)
    with pytest.raises(TrainingInvalid, match="folds"):
        walk_forward(x, y, algorithm="logistic_regression", folds=0, gap=1)
    with pytest.raises(TrainingInvalid, match="too few rows"):
        walk_forward(x, y, algorithm="logistic_regression", folds=10, gap=1)
    with pytest.raises(TrainingInvalid, match="aligned and complete"):
        walk_forward(x.assign(a=np.nan), y, algorithm="logistic_regression", folds=1, gap=1)
