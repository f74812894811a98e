"""Training on stored bars: labels, walk-forward validation and the metrics a model is judged
by (pure: pandas, numpy, scikit-learn; no Django).

A label is whether the close ``horizon`` bars later is above the close now (the forward log
return > 0); the last ``horizon`` bars have none and are dropped. Walk-forward: the rows are
cut into ``folds + 1`` consecutive blocks; fold k trains on every block before block k + 1
and tests on block k + 1, with a gap of ``horizon`` rows between them so that no training
label looks into the test block. Metrics are computed on every out-of-sample prediction
together: AUC, Brier score, hit rate (the predicted side was right) and calibration bins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

ALGORITHMS = ("logistic_regression", "hist_gradient_boosting")
CALIBRATION_BINS = 10


class TrainingInvalid(ValueError):
    """The data or settings cannot train a model (the message says why)."""


@contextmanager
def single_threaded() -> Iterator[None]:
    """Native thread pools (OpenMP, BLAS) capped at one thread for the block.

    Models here are small; a pool of threads per core fighting the web, the workers and the
    other cores' work made a 1-second fit take 40 seconds on a two-core machine. The ML worker
    also caps them by environment (Procfile); this covers commands and any other caller."""
    with threadpool_limits(limits=1):
        yield


def labels(close: pd.Series, *, horizon: int) -> pd.Series:
    """1.0 when the close ``horizon`` bars later is higher, 0.0 when lower; NaN at the end and
    where the close did not move."""
    if horizon < 1:
        raise TrainingInvalid(f"horizon must be >= 1 bar, got {horizon}")
    ratio = (close.shift(-horizon) / close).to_numpy(dtype=float)
    ahead = pd.Series(np.log(ratio), index=close.index)
    # A close that did not move is neither: left out (NaN), as the live outcomes leave it out.
    return (ahead > 0).astype(float).where(ahead.notna() & (ahead != 0))


def pipeline(algorithm: str, *, seed: int = 0) -> Pipeline:
    """Scaler + classifier: the object trained, saved and scored."""
    if algorithm == "logistic_regression":
        model: object = LogisticRegression(max_iter=1000)
    elif algorithm == "hist_gradient_boosting":
        # Shallow, strongly regularised trees: minute bars are mostly noise, and deeper trees
        # learn it (out of sample they rank as well but their probabilities are overconfident,
        # which the Brier score punishes and the promotion rule would never pass).
        model = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.05,
            max_depth=3,
            min_samples_leaf=200,
            l2_regularization=1.0,
            random_state=seed,
        )
    else:
        raise TrainingInvalid(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    return Pipeline([("scale", StandardScaler()), ("model", model)])


@dataclass(frozen=True)
class Metrics:
    auc: float
    brier: float
    hit_rate: float
    samples: int
    # Per bin of predicted probability: mean prediction, observed frequency, count.
    calibration: list[tuple[float, float, int]] = field(default_factory=list)


def metrics(y: np.ndarray, p: np.ndarray) -> Metrics:
    """AUC, Brier score, hit rate and calibration of probabilities ``p`` for outcomes ``y``."""
    if len(y) == 0 or len(y) != len(p):
        raise TrainingInvalid("metrics need as many outcomes as predictions, at least one")
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    bins = np.minimum((p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    calibration = [
        (float(p[bins == b].mean()), float(y[bins == b].mean()), int((bins == b).sum()))
        for b in range(CALIBRATION_BINS)
        if (bins == b).any()
    ]
    return Metrics(
        auc=auc,
        brier=float(brier_score_loss(y, p)),
        hit_rate=float(((p > 0.5) == (y > 0.5)).mean()),
        samples=len(y),
        calibration=calibration,
    )


@dataclass(frozen=True)
class WalkForward:
    metrics: Metrics
    folds: int
    predictions: pd.Series  # out-of-sample probabilities, indexed like the rows
    # The last fold's model and where its test block starts: feature importance is measured
    # there, out of sample.
    last_model: Pipeline
    last_test_start: int


def walk_forward(
    x: pd.DataFrame,
    y: pd.Series,
    *,
    algorithm: str,
    folds: int,
    gap: int,
    seed: int = 0,
    on_fold: Callable[[int], None] | None = None,
) -> WalkForward:
    """Out-of-sample predictions of every fold (see the module docstring) and their metrics.
    ``x`` and ``y`` are aligned, oldest first, with no missing value; ``on_fold(k)`` is called
    as fold ``k`` (1-based) finishes (progress bars)."""
    if folds < 1:
        raise TrainingInvalid(f"folds must be >= 1, got {folds}")
    if x.isna().to_numpy().any() or y.isna().any() or not x.index.equals(y.index):
        raise TrainingInvalid("features and labels must be aligned and complete")
    edges = np.linspace(0, len(x), folds + 2).astype(int)
    predictions = []
    model: Pipeline | None = None
    for k in range(folds):
        train_end, test_start, test_end = edges[k + 1] - gap, edges[k + 1], edges[k + 2]
        if train_end < 50 or test_end <= test_start:
            raise TrainingInvalid("too few rows for this many folds")
        if y.iloc[:train_end].nunique() < 2:
            raise TrainingInvalid(f"fold {k + 1} has only one label class to learn from")
        model = pipeline(algorithm, seed=seed)
        with single_threaded():
            model.fit(x.iloc[:train_end], y.iloc[:train_end])
            probability = model.predict_proba(x.iloc[test_start:test_end])[:, 1]
        predictions.append(pd.Series(probability, index=x.index[test_start:test_end]))
        if on_fold is not None:
            on_fold(k + 1)
    assert model is not None  # folds >= 1
    out = pd.concat(predictions)
    return WalkForward(
        metrics=metrics(y.loc[out.index].to_numpy(), out.to_numpy()),
        folds=folds,
        predictions=out,
        last_model=model,
        last_test_start=int(edges[folds]),
    )
