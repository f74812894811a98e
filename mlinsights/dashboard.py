"""What the ML Insights tab shows: one model version's cached insights, the registry to choose
from, the latest predictions and the stale predictions the ML signal source ignored.

Selectors return JSON-ready dicts. Every number is formatted here, once, beside its raw value
(``display`` next to ``value``): the page renders the text, ``mlinsights.api`` serves the same
dicts and the page's script writes the text it fetches, so page, API and live updates always
agree. The raw series are only for the charts. The insights come from ``InsightCache`` (the
ML cycle computes them every minute); no selector reads more than a bounded number of rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from django.conf import settings
from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from mlinsights.models import InsightCache, ModelVersion, Prediction
from mlinsights.services import DRIFT_HOURS, RECENT_PREDICTIONS, prediction_as_dict
from tradingsite.display import number_text

MODELS_SHOWN: Final = 100  # registry rows in the version selector (active and shadow first)
TRAIN_HINT: Final = (
    "Train one with: python manage.py train_model --days 2 (it learns from the stored "
    "1-minute bars: the paper venue starts with a day of them, import_klines adds history). "
    "It starts in shadow: scored live, not traded."
)

# How each kind of number is shown. One formatter for the page, its live updates and the API.
FORMATS: Final[Mapping[str, str]] = {
    "probability": "percent",
    "hit_rate": "percent",
    "base_rate": "percent",
    "brier_skill": "signed_percent",
    "brier": "fixed4",
    "auc": "fixed3",
    "psi": "fixed3",
    "importance": "fixed4",
    "count": "count",
    "ms": "ms_tenths",
}
STATE_LABELS: Final[Mapping[str, str]] = {
    ModelVersion.State.ACTIVE: "active: trading",
    ModelVersion.State.SHADOW: "shadow: not trading",
    ModelVersion.State.RETIRED: "retired: not trading",
}
# (key, label, kind) of the headline figures, in the order the page shows them.
LIVE_KPIS: Final = (
    ("brier", "Brier score", "brier"),
    ("brier_skill", "Brier skill vs the live base rate (hindsight)", "brier_skill"),
    ("hit_rate", "hit rate", "hit_rate"),
    ("auc", "AUC", "auc"),
    ("base_rate", "base rate (rises)", "base_rate"),
    ("samples", "resolved predictions", "count"),
    ("pending", "pending outcomes", "count"),
    ("latency_p50", "latency p50 (ms)", "ms"),
    ("latency_p95", "latency p95 (ms)", "ms"),
)
TRAINING_KPIS: Final = (
    ("wf_brier", "Brier score", "brier"),
    ("wf_hit_rate", "hit rate", "hit_rate"),
    ("wf_auc", "AUC", "auc"),
    ("wf_base_rate", "base rate (rises)", "base_rate"),
    ("wf_samples", "out-of-sample predictions", "count"),
    ("rows", "training rows", "count"),
)
_VERSION = re.compile(r"^v?(\d{1,9})$", re.IGNORECASE)


def number_display(kind: str, value: float | None) -> str:
    """How ``value`` of ``kind`` (a key of ``FORMATS``) is shown; ``NO_VALUE`` without one."""
    return number_text(FORMATS.get(kind, kind), value)


def version_parse(text: str) -> int | None:
    """A version number from a query string ("3" or "v3"); None when it is not one."""
    match = _VERSION.match(text.strip())
    if match is None or int(match.group(1)) < 1:
        return None
    return int(match.group(1))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _kpi(key: str, label: str, kind: str, value: Any) -> dict[str, Any]:
    number = _number(value)
    return {"key": key, "label": label, "value": number, "display": number_display(kind, number)}


def prediction_display(row: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction as ``prediction_as_dict`` has it (cached, pushed or read now), with its
    text: the time (UTC, to the minute), P(rise) and the outcome (✓ the side predicted
    happened, ✗ it did not, "pending" before the horizon has passed, "void" when the close
    did not move or the bar was missing)."""
    probability = float(row["probability"])
    outcome = row.get("outcome")
    if outcome is None and row.get("void"):
        result, outcome_display = "void", "void (no move or no bar)"
    elif outcome is None:
        result, outcome_display = "pending", "pending"
    else:
        rose = float(outcome) > 0.5
        hit = (probability > 0.5) == rose
        result = "hit" if hit else "miss"
        outcome_display = f"{'✓' if hit else '✗'} {'rose' if rose else 'fell'}"
    at = datetime.fromisoformat(str(row["as_of"]))
    return {
        **row,
        "as_of_display": f"{at:%Y-%m-%d %H:%M}",
        "probability_display": number_display("probability", probability),
        "result": result,
        "outcome_display": outcome_display,
    }


def _calibration_points(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Calibration bins as dicts, from the insights' dicts or training's [mean, observed, n]."""
    points = []
    for row in rows:
        if isinstance(row, Mapping):
            mean, observed, count = row["mean_predicted"], row["observed_frequency"], row["count"]
        else:
            mean, observed, count = row
        points.append({"mean_predicted": mean, "observed_frequency": observed, "count": int(count)})
    return points


def _importance(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Permutation importance per feature, largest first, with its bar length in % of the
    largest (a feature whose shuffling did not hurt, <= 0, gets no bar)."""
    values = [_number(row.get("importance")) for row in rows]
    largest = max((value for value in values if value is not None and value > 0), default=0.0)
    return [
        {
            "feature": str(row["feature"]),
            "importance": value,
            "display": number_display("importance", value),
            "bar": round(100 * value / largest, 1) if largest and value and value > 0 else 0.0,
        }
        for row, value in zip(rows, values, strict=True)
    ]


def _drift(drift: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """PSI per feature, the most drifted first (features without a PSI last, by name)."""
    rows = [
        {
            "feature": feature,
            "psi": _number(value.get("psi")),
            "display": number_display("psi", _number(value.get("psi"))),
            "level": str(value.get("level") or "unknown"),
        }
        for feature, value in drift.items()
    ]
    return sorted(rows, key=lambda row: (row["psi"] is None, -(row["psi"] or 0.0), row["feature"]))


def ml_stale_counts() -> list[dict[str, Any]]:
    """Per traded symbol: how many predictions the ML signal source ignored as stale (what
    ``services.stale_count`` counts, for every symbol in one query)."""
    found = dict(
        Prediction.objects.filter(stale=True, symbol__in=settings.SYMBOLS)
        .order_by()
        .values("symbol")
        .annotate(count=Count("id"))
        .values_list("symbol", "count")
    )
    return [
        {
            "symbol": symbol,
            "count": found.get(symbol, 0),
            "display": number_display("count", found.get(symbol, 0)),
        }
        for symbol in settings.SYMBOLS
    ]


def _state_order() -> Case:
    return Case(
        When(state=ModelVersion.State.ACTIVE, then=Value(0)),
        When(state=ModelVersion.State.SHADOW, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )


def _chosen(version: int | None) -> QuerySet[ModelVersion]:
    """The requested version, or by default the active model, else the newest shadow one."""
    rows = ModelVersion.objects.select_related("insights")
    if version is not None:
        return rows.filter(version=version)
    return rows.filter(state__in=[ModelVersion.State.ACTIVE, ModelVersion.State.SHADOW]).order_by(
        _state_order(), "-version"
    )


def ml_insights(version: int | None = None) -> dict[str, Any] | None:
    """The ML Insights of model ``version`` (default: the active model, else the newest shadow
    one) as last computed, every number formatted; None when there is no such model or its
    insights are not computed yet (``ml_insights_missing`` says which). Two queries: the
    model with its cache, and the stale counts."""
    model = _chosen(version).first()
    if model is None:
        return None
    try:
        cache = model.insights
    except InsightCache.DoesNotExist:
        return None
    return _insights_shown(model, cache)


def _insights_shown(model: ModelVersion, cache: InsightCache) -> dict[str, Any]:
    data = cache.data
    live = data.get("live") or {}
    latency = data.get("latency_ms") or {}
    trained = data.get("trained") or {}
    metrics = trained.get("metrics") or model.metrics or {}
    live_values = {
        **live,
        "pending": data.get("pending"),
        "latency_p50": latency.get("p50"),
        "latency_p95": latency.get("p95"),
    }
    training_values = {
        "wf_brier": metrics.get("brier"),
        "wf_hit_rate": metrics.get("hit_rate"),
        "wf_auc": metrics.get("auc"),
        "wf_base_rate": metrics.get("base_rate"),
        "wf_samples": metrics.get("samples"),
        "rows": trained.get("rows", model.rows),
    }
    # The state is the registry's, not the cache's: a promotion or retirement from the admin
    # changes it before the next refresh does.
    state = model.state
    promotion = data.get("promotion") if state == ModelVersion.State.SHADOW else None
    curves = data.get("curves") or {}
    window = curves.get("window")
    return {
        "version": model.version,
        "state": state,
        "state_label": STATE_LABELS.get(state, state),
        "trading": state == ModelVersion.State.ACTIVE,
        "algorithm": model.algorithm,
        "algorithm_label": model.algorithm.replace("_", " "),
        "horizon_bars": model.horizon_bars,
        "computed_at": cache.computed_at.isoformat(),
        "computed_at_display": f"{cache.computed_at:%Y-%m-%d %H:%M:%S} UTC",
        "trained": {
            "start": trained.get("start", model.train_start.isoformat()),
            "end": trained.get("end", model.train_end.isoformat()),
            "start_display": f"{model.train_start:%Y-%m-%d %H:%M}",
            "end_display": f"{model.train_end:%Y-%m-%d %H:%M}",
            "symbols": list(model.symbols),
        },
        "live": [_kpi(key, label, kind, live_values.get(key)) for key, label, kind in LIVE_KPIS],
        "training": [
            _kpi(key, label, kind, training_values.get(key)) for key, label, kind in TRAINING_KPIS
        ],
        "predictions": data.get("predictions", 0),
        "promotion": _promotion(promotion) if promotion else None,
        "recent": [prediction_display(row) for row in data.get("recent") or []],
        "calibration": _calibration_points(data.get("calibration") or []),
        "training_calibration": _calibration_points(metrics.get("calibration") or []),
        "curves": {
            "window": window if isinstance(window, int) else None,
            "time": list(curves.get("time") or []),
            "hit_rate": list(curves.get("hit_rate") or []),
            "brier": list(curves.get("brier") or []),
        },
        "importance": _importance(data.get("importance") or []),
        "drift": _drift(data.get("drift") or {}),
        "drift_rows": data.get("drift_rows", 0),
        "drift_rows_display": number_display("count", data.get("drift_rows", 0)),
        "drift_hours": DRIFT_HOURS,
        "stale": ml_stale_counts(),
    }


def _promotion(check: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "passes": bool(check.get("passes")),
        "reason": str(check.get("reason") or ""),
        "incumbent": str(check.get("incumbent") or ""),
        "samples": check.get("samples"),
        "brier": _number(check.get("brier")),
        "brier_incumbent": _number(check.get("brier_incumbent")),
        "display": {
            "samples": number_display("count", _number(check.get("samples"))),
            "brier": number_display("brier", _number(check.get("brier"))),
            "brier_incumbent": number_display("brier", _number(check.get("brier_incumbent"))),
        },
    }


def ml_insights_missing(version: int | None = None) -> str:
    """Why ``ml_insights(version)`` has nothing to show, and what to do about it."""
    if version is not None and not ModelVersion.objects.filter(version=version).exists():
        return f"There is no model v{version}."
    model = _chosen(version).first()
    if model is None:
        if ModelVersion.objects.exists():
            return "No active or shadow model: every model is retired. " + TRAIN_HINT
        return "No model trained yet. " + TRAIN_HINT
    if model.state == ModelVersion.State.RETIRED:
        return (
            f"v{model.version} was retired before its insights were computed (only active and "
            "shadow models are scored and measured)."
        )
    return (
        f"The insights of v{model.version} are not computed yet: the ML cycle computes them "
        "every minute once the ML worker and beat run (make run starts both)."
    )


def ml_models() -> list[dict[str, Any]]:
    """The registry to choose from, newest first: active and shadow models always, then the
    newest retired ones (``MODELS_SHOWN`` in all), with their walk-forward scores."""
    rows = ModelVersion.objects.order_by(_state_order(), "-version").values(
        "version", "state", "algorithm", "horizon_bars", "created_at", "metrics"
    )[:MODELS_SHOWN]
    models = []
    for row in sorted(rows, key=lambda item: -item["version"]):
        metrics = row["metrics"] or {}
        auc, brier = _number(metrics.get("auc")), _number(metrics.get("brier"))
        models.append(
            {
                "version": row["version"],
                "state": row["state"],
                "state_label": STATE_LABELS.get(row["state"], row["state"]),
                "algorithm": row["algorithm"],
                "algorithm_label": row["algorithm"].replace("_", " "),
                "horizon_bars": row["horizon_bars"],
                "created_at": row["created_at"].isoformat(),
                "created_display": f"{row['created_at']:%Y-%m-%d %H:%M}",
                "auc": auc,
                "brier": brier,
                "display": {
                    "auc": number_display("auc", auc),
                    "brier": number_display("brier", brier),
                },
            }
        )
    return models


def ml_predictions_recent(
    *, version: int | None = None, symbol: str | None = None, limit: int = RECENT_PREDICTIONS
) -> list[dict[str, Any]]:
    """The newest predictions (of one version and/or symbol when given), read now, newest
    first, in the shape of the insights' ``recent`` rows."""
    rows = Prediction.objects.select_related("model_version").order_by("-as_of", "-id")
    if version is not None:
        rows = rows.filter(model_version__version=version)
    if symbol is not None:
        rows = rows.filter(symbol=symbol)
    return [prediction_display(prediction_as_dict(row)) for row in rows[:limit]]


def ml_insights_context(request_version: str) -> dict[str, Any]:
    """Everything ``dashboard/ml-insights.html`` renders. ``request_version`` is the raw
    ``?version=`` text: a bad or unknown one is explained on the page, beside the default
    model's insights."""
    problem = ""
    requested: int | None = None
    if request_version.strip():
        requested = version_parse(request_version)
        if requested is None:
            problem = (
                f"“{request_version.strip()[:40]}” is not a model version: choose one from the "
                "list (showing the default model)."
            )
    if requested is not None and not ModelVersion.objects.filter(version=requested).exists():
        problem = f"There is no model v{requested}: showing the default model."
        requested = None
    insights = ml_insights(requested)
    empty = "" if insights is not None else ml_insights_missing(requested)
    return _context(insights, requested, problem=problem, empty=empty)


def _context(
    insights: dict[str, Any] | None, requested: int | None, *, problem: str, empty: str
) -> dict[str, Any]:
    return {
        "ml": insights,
        "ml_models": ml_models(),
        "ml_requested": requested,
        "ml_selected": insights["version"] if insights else requested,
        "ml_problem": problem,
        "ml_empty": empty,
    }
