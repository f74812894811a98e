"""The aggregates the ML Insights tab shows (pure numpy/pandas, vectorised; no Django).

- Drift: a model's training rows leave a *reference* per feature (quantile bin edges and the
  share of rows in each bin); live rows are compared with it by the Population Stability
  Index, ``PSI = sum((live - ref) * ln(live / ref))`` over the bins.
- Calibration: mean predicted probability against observed frequency per probability bin,
  binned exactly as ``training.metrics`` bins them.
- Rolling scores: hit rate and Brier score over a trailing window of predictions in time order.
- Summary: Brier, hit rate, AUC and the Brier skill score against climatology (always
  forecasting the base rate).
- Promotion: whether a candidate model's out-of-sample Brier beats the incumbent's by a margin.

Outcomes ``y`` are 0 or 1 (1: the close ``horizon`` bars later was higher), probabilities ``p``
are the predicted chance of a 1, both in the order the predictions were made. A prediction
"hits" when ``p > 0.5`` and ``y == 1`` or ``p <= 0.5`` and ``y == 0``, as in ``training``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlinsights.training import CALIBRATION_BINS

FloatArray = npt.NDArray[np.float64]
Reference = dict[str, dict[str, list[float]]]

DRIFT_BINS: Final = 10
# Conventional PSI reading: below 0.1 stable, from 0.1 a moderate shift, from 0.25 significant.
PSI_THRESHOLDS: Final[Mapping[str, float]] = {"moderate": 0.1, "significant": 0.25}
# An empty bin would make ln(live / ref) infinite: bin fractions are floored at this before the
# sum, so one bin that empties (or fills from nothing) adds about f * ln(f / 1e-4), finite.
PSI_EPSILON: Final = 1e-4
# Fewer live values than this give no PSI (None). With 10 bins, sampling noise alone gives a
# PSI of about 9 / n (chi-square with 9 degrees of freedom over n): 0.03 at 300 values, three
# standard deviations still below the moderate threshold; at 100 values noise reaches it.
PSI_MIN_SAMPLES: Final = 300


class CalibrationBin(TypedDict):
    mean_predicted: float
    observed_frequency: float
    count: int


class Summary(TypedDict):
    samples: int
    brier: float
    hit_rate: float
    auc: float | None  # None when the outcomes are all one class
    base_rate: float
    climatology_brier: float  # Brier of always forecasting the base rate
    brier_skill: float | None  # 1 - brier / climatology_brier; None when that is 0


# --- drift ----------------------------------------------------------------------------------


def drift_reference(x: pd.DataFrame, bins: int = DRIFT_BINS) -> Reference:
    """Per feature column of the training rows ``x``: ``{"edges": [...], "fractions": [...]}``.

    ``edges`` are the inner quantile edges (at 1/bins, 2/bins, ...), deduplicated, so heavy
    ties give fewer bins; -inf and +inf are implied outside. Bin ``i`` holds the values ``v``
    with ``edges[i - 1] <= v < edges[i]``; ``fractions`` (one more than ``edges``) is the share
    of the column's values in each bin. Missing and infinite values are ignored per column; a
    column without any value gets empty lists (and no PSI later). Plain floats: JSON-ready."""
    if bins < 2:
        raise ValueError(f"drift needs at least 2 bins, got {bins}")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    reference: Reference = {}
    for column in x.columns:
        values = _finite(x[column], name=str(column))
        if len(values) == 0:
            reference[str(column)] = {"edges": [], "fractions": []}
            continue
        edges = np.unique(np.quantile(values, quantiles))
        reference[str(column)] = {
            "edges": [float(edge) for edge in edges],
            "fractions": [float(share) for share in _fractions(values, edges)],
        }
    return reference


def psi(
    reference: Mapping[str, Mapping[str, Sequence[float]]],
    live: pd.DataFrame,
    *,
    min_samples: int = PSI_MIN_SAMPLES,
) -> dict[str, float | None]:
    """The PSI of each feature's live values against its reference bins (see
    ``drift_reference``), with bin fractions floored at ``PSI_EPSILON``.

    Keys: the reference's features, then live columns the reference lacks. None for a feature
    missing from the reference or from ``live``, or with fewer than ``min_samples`` finite
    live values."""
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    live_columns = {str(column): column for column in live.columns}
    out: dict[str, float | None] = {}
    for feature, bins in reference.items():
        edges, expected = _reference_bins(feature, bins)
        if feature not in live_columns or len(expected) == 0:
            out[feature] = None
            continue
        values = _finite(live[live_columns[feature]], name=feature)
        if len(values) < min_samples:
            out[feature] = None
            continue
        actual = np.maximum(_fractions(values, edges), PSI_EPSILON)
        floored = np.maximum(expected, PSI_EPSILON)
        out[feature] = float(np.sum((actual - floored) * np.log(actual / floored)))
    for feature in live_columns:
        out.setdefault(feature, None)
    return out


def drift_level(value: float | None) -> str:
    """The reading of a PSI by ``PSI_THRESHOLDS``: "stable", "moderate" or "significant";
    "unknown" without one."""
    if value is None or math.isnan(value):
        return "unknown"
    if value >= PSI_THRESHOLDS["significant"]:
        return "significant"
    if value >= PSI_THRESHOLDS["moderate"]:
        return "moderate"
    return "stable"


def _finite(column: pd.Series, *, name: str) -> FloatArray:
    try:
        values = column.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"feature {name!r} is not numeric") from error
    finite: FloatArray = values[np.isfinite(values)]
    return finite


def _fractions(values: FloatArray, edges: FloatArray) -> FloatArray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    fractions: FloatArray = counts / len(values)
    return fractions


def _reference_bins(
    feature: str, bins: Mapping[str, Sequence[float]]
) -> tuple[FloatArray, FloatArray]:
    try:
        edges = np.asarray(bins["edges"], dtype=np.float64)
        fractions = np.asarray(bins["fractions"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"reference of {feature!r} needs numeric 'edges' and 'fractions'"
        ) from error
    if len(fractions) == 0 and len(edges) == 0:
        return edges, fractions
    if edges.ndim != 1 or fractions.ndim != 1 or len(fractions) != len(edges) + 1:
        raise ValueError(f"reference of {feature!r} needs one more fraction than edges")
    if not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        raise ValueError(f"reference edges of {feature!r} must be finite and increasing")
    if (fractions < 0).any() or not math.isclose(float(fractions.sum()), 1.0, abs_tol=1e-9):
        raise ValueError(f"reference fractions of {feature!r} must be >= 0 and sum to 1")
    return edges, fractions


# --- scores ---------------------------------------------------------------------------------


def calibration(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = CALIBRATION_BINS
) -> list[CalibrationBin]:
    """Per non-empty bin of predicted probability (``bins`` equal-width bins of [0, 1], a
    probability of exactly 1 in the last, as ``training.metrics``), in bin order: the mean
    prediction, the observed frequency of 1s and the count."""
    if bins < 1:
        raise ValueError(f"calibration needs at least 1 bin, got {bins}")
    outcomes, probabilities = _checked(y, p)
    which = np.minimum((probabilities * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=probabilities, minlength=bins)
    observed = np.bincount(which, weights=outcomes, minlength=bins)
    return [
        {
            "mean_predicted": float(predicted[b] / counts[b]),
            "observed_frequency": float(observed[b] / counts[b]),
            "count": int(counts[b]),
        }
        for b in np.flatnonzero(counts)
    ]


def rolling_scores(
    y: npt.ArrayLike, p: npt.ArrayLike, window: int
) -> tuple[FloatArray, FloatArray]:
    """Hit rate and Brier score over the trailing ``window`` predictions at each position
    (that prediction and the ``window - 1`` before it); NaN until the window is full."""
    if window < 1:
        raise ValueError(f"window must be >= 1 prediction, got {window}")
    outcomes, probabilities = _checked(y, p)
    hits = ((probabilities > 0.5) == (outcomes > 0.5)).astype(np.float64)
    return _trailing_mean(hits, window), _trailing_mean((probabilities - outcomes) ** 2, window)


def _trailing_mean(values: FloatArray, window: int) -> FloatArray:
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        total = np.concatenate(([0.0], np.cumsum(values)))
        out[window - 1 :] = (total[window:] - total[:-window]) / window
    return out


def summary(y: npt.ArrayLike, p: npt.ArrayLike) -> Summary:
    """Headline scores of predictions ``p`` for outcomes ``y`` (see ``Summary``).

    Climatology forecasts the base rate of these same outcomes, which is known only in
    hindsight: a skill above 0 means the model beat even that."""
    outcomes, probabilities = _checked(y, p)
    if len(outcomes) == 0:
        raise ValueError("a summary needs at least one prediction")
    brier = float(np.mean((probabilities - outcomes) ** 2))
    base_rate = float(np.mean(outcomes))
    climatology = float(np.mean((base_rate - outcomes) ** 2))
    return {
        "samples": len(outcomes),
        "brier": brier,
        "hit_rate": float(np.mean((probabilities > 0.5) == (outcomes > 0.5))),
        "auc": _auc(outcomes, probabilities),
        "base_rate": base_rate,
        "climatology_brier": climatology,
        "brier_skill": 1.0 - brier / climatology if climatology > 0 else None,
    }


def _auc(outcomes: FloatArray, probabilities: FloatArray) -> float | None:
    """Mann-Whitney: the chance a random 1 is ranked above a random 0 (ties count half)."""
    positives = int(np.count_nonzero(outcomes))
    negatives = len(outcomes) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = pd.Series(probabilities).rank(method="average").to_numpy()
    rank_sum = float(ranks[outcomes > 0.5].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _checked(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    outcomes = np.asarray(y, dtype=np.float64)
    probabilities = np.asarray(p, dtype=np.float64)
    if outcomes.ndim != 1 or probabilities.ndim != 1:
        raise ValueError("outcomes and probabilities must be one-dimensional")
    if len(outcomes) != len(probabilities):
        raise ValueError(
            f"as many outcomes as probabilities needed, got {len(outcomes)} and "
            f"{len(probabilities)}"
        )
    if not np.isin(outcomes, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1")
    # NaN fails both comparisons, so it is refused here too.
    if not ((probabilities >= 0.0) & (probabilities <= 1.0)).all():
        raise ValueError("probabilities must be in [0, 1]")
    return outcomes, probabilities


# --- promotion ------------------------------------------------------------------------------


def promotion_decision(
    brier_candidate: float,
    brier_incumbent: float,
    samples: int,
    *,
    margin: float,
    min_samples: int,
) -> tuple[bool, str]:
    """Promote the candidate only when it was scored on at least ``min_samples`` predictions
    and its Brier score is lower than the incumbent's by more than ``margin`` (lower is
    better; equal or within the margin keeps the incumbent). The reason quotes the numbers."""
    for name, value in (("candidate", brier_candidate), ("incumbent", brier_incumbent)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the {name}'s Brier score must be in [0, 1], got {value}")
    if not margin >= 0.0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if samples < 0 or min_samples < 1:
        raise ValueError(f"samples must be >= 0 and min_samples >= 1, got {samples}, {min_samples}")
    scores = f"candidate Brier {brier_candidate:.4f} vs incumbent {brier_incumbent:.4f}"
    if samples < min_samples:
        return False, (
            f"kept the incumbent: {scores} on {samples} predictions, fewer than the "
            f"{min_samples} required"
        )
    improvement = brier_incumbent - brier_candidate
    if brier_candidate < brier_incumbent - margin:
        return True, (
            f"promoted: {scores}, better by {improvement:.4f}, more than the margin "
            f"{margin:.4f}, on {samples} predictions"
        )
    return False, (
        f"kept the incumbent: {scores}, improvement {improvement:+.4f} is not more than the "
        f"margin {margin:.4f} ({samples} predictions)"
    )
