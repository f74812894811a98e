"""ML in the database: training into the registry, promotion, live scoring, the ML signal's
prediction, outcomes and the insights cache.

Every function here is what a command, task, admin action or the executor calls; they stay
thin. The numbers come from the pure modules (``features``, ``training``, ``insights``).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone
from sklearn.inspection import permutation_importance

from doctor.models import Incident
from doctor.services import incident_open, incident_resolve
from mlinsights import insights
from mlinsights.features import FEATURES, WARMUP_BARS, BarsInvalid, features
from mlinsights.models import InsightCache, MLConfig, ModelVersion, Prediction
from mlinsights.registry import ArtifactInvalid, artifact_load, artifact_save
from mlinsights.training import (
    TrainingInvalid,
    labels,
    pipeline,
    single_threaded,
    walk_forward,
)
from routing.models import MarketBar, SignalSource
from routing.signals import ML_SOURCE
from tradingsite.live import live_push
from tradingsite.mirrors import prediction_mirror
from tradingsite.redisconn import redis_client, redis_key
from tradingsite.replaydb import replay_active

logger = logging.getLogger(__name__)

BAR_INTERVAL = "1m"
BAR_SECONDS = 60
# Bars read to score one symbol: the warm-up plus enough for the exponential averages (MACD)
# to forget where the history started (their weight on bar 0 is below 1e-6 after ~400 bars).
SCORING_BARS = WARMUP_BARS + 400
MIN_TRAINING_ROWS = 1_000
IMPORTANCE_ROWS = 5_000  # rows of the last test block that permutation importance uses
INSIGHT_ROWS = 5_000  # latest resolved predictions the insights are computed over
ROLLING_WINDOW = 100  # predictions per rolling hit rate / Brier point
CURVE_POINTS = 300  # at most this many points per chart series
DRIFT_HOURS = 24  # live features of this many hours against the training distribution
RECENT_PREDICTIONS = 50
# Predictions older than this are deleted, except those a signal was made from (kept with
# the signal's record); the insights read the latest INSIGHT_ROWS only.
PREDICTION_RETENTION = timedelta(days=30)
PRUNE_BATCH = 10_000
# Shadow models scored at once: a newer one retires the oldest beyond this (a daily retrain
# would otherwise add one more model to score every minute, every day).
MAX_SHADOWS = 3
COMPONENT = "mlinsights"
Progress = Callable[[str, int, int], None]


class ModelStateInvalid(ValueError):
    """A promotion or retirement that the rules refuse (the message says why)."""


def ml_config() -> MLConfig:
    config, _ = MLConfig.objects.get_or_create(pk=1)
    return config


# --- bars and training ------------------------------------------------------------------------


def bars_frame(
    symbol: str, *, end: datetime, start: datetime | None = None, limit: int | None = None
) -> pd.DataFrame:
    """``symbol``'s 1m bars closed in [start, end] (the latest ``limit`` of them), oldest first,
    as floats indexed by close time: what ``features`` takes."""
    query = MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=end)
    if start is not None:
        query = query.filter(close_time__gte=start)
    fields = ("close_time", "open", "high", "low", "close", "volume")
    if limit is not None:
        rows = list(query.order_by("-open_time").values_list(*fields)[:limit])
        rows.reverse()
    else:
        rows = list(query.order_by("open_time").values_list(*fields))
    frame = pd.DataFrame(rows, columns=list(fields))
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop("close_time"), utc=True), name="close_time")
    frame.index = index
    return frame.astype(float)


@dataclass(frozen=True)
class TrainingData:
    x: pd.DataFrame  # FEATURES columns, rows of every symbol ordered by time, RangeIndex
    y: pd.Series
    times: pd.DatetimeIndex


def training_data(
    *,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    horizon: int,
    progress: Progress | None = None,
) -> TrainingData:
    """Feature rows with their labels, for the bars of ``symbols`` closed in [start, end]; a
    label never looks past ``end`` (the last ``horizon`` bars of each symbol have none)."""
    parts: list[pd.DataFrame] = []
    for done, symbol in enumerate(symbols, start=1):
        bars = bars_frame(symbol, start=start, end=end)
        if len(bars) > WARMUP_BARS + horizon:
            rows = features(bars)[list(FEATURES)]
            rows["label"] = labels(bars["close"], horizon=horizon)
            parts.append(rows.dropna())
        if progress is not None:
            progress("bars", done, len(symbols))
    if not parts:
        raise TrainingInvalid(f"no bars of {', '.join(symbols)} between {start} and {end}")
    frame = pd.concat(parts).sort_index(kind="mergesort")
    if len(frame) < MIN_TRAINING_ROWS:
        raise TrainingInvalid(
            f"only {len(frame)} rows with features and a label between {start:%Y-%m-%d %H:%M} "
            f"and {end:%Y-%m-%d %H:%M}; at least {MIN_TRAINING_ROWS} are needed "
            "(import more bars with import_klines or widen the window)"
        )
    times = pd.DatetimeIndex(frame.index)
    frame = frame.reset_index(drop=True)
    y = frame.pop("label")
    return TrainingData(x=frame, y=y, times=times)


def _importance(model: Any, x: pd.DataFrame, y: pd.Series, *, seed: int) -> dict[str, float]:
    """Permutation importance (drop in Brier skill when a feature is shuffled), out of sample."""
    if len(x) > IMPORTANCE_ROWS:
        x, y = x.iloc[-IMPORTANCE_ROWS:], y.iloc[-IMPORTANCE_ROWS:]
    with single_threaded():
        result = permutation_importance(
            model, x, y, scoring="neg_brier_score", n_repeats=3, random_state=seed
        )
    means = np.asarray(result["importances_mean"], dtype=float)
    return {name: float(value) for name, value in zip(x.columns, means, strict=True)}


def model_train(
    *,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    algorithm: str | None = None,
    horizon: int | None = None,
    folds: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> ModelVersion:
    """Train on stored bars, validate walk-forward, save the artifact and register the model
    as a **shadow** version. Settings left out come from ``MLConfig``. Raises
    ``TrainingInvalid`` (nothing written) for bad settings or too little data."""
    config = ml_config()
    algorithm = algorithm or config.algorithm
    horizon = horizon or config.horizon_bars
    folds = folds or config.folds
    if timezone.is_naive(start) or timezone.is_naive(end) or end <= start:
        raise TrainingInvalid("the training window needs aware start < end")
    if not symbols:
        raise TrainingInvalid("name at least one symbol to train on")
    began = time.perf_counter()
    data = training_data(symbols=symbols, start=start, end=end, horizon=horizon, progress=progress)
    if data.y.nunique() < 2:
        raise TrainingInvalid("every label is the same: the bars never moved that way")

    def on_fold(k: int) -> None:
        if progress is not None:
            progress("folds", k, folds)

    # The gap keeps every training label out of the test block: horizon bars of every symbol.
    validation = walk_forward(
        data.x,
        data.y,
        algorithm=algorithm,
        folds=folds,
        gap=horizon * len(symbols),
        seed=seed,
        on_fold=on_fold,
    )
    test = slice(validation.last_test_start, None)
    importance = _importance(validation.last_model, data.x.iloc[test], data.y.iloc[test], seed=seed)
    model = pipeline(algorithm, seed=seed)
    with single_threaded():
        model.fit(data.x, data.y)
    if progress is not None:
        progress("fit", 1, 1)
    reference = insights.drift_reference(data.x)
    measured = validation.metrics
    version_metrics = {
        "auc": None if math.isnan(measured.auc) else measured.auc,
        "brier": measured.brier,
        "hit_rate": measured.hit_rate,
        "samples": measured.samples,
        "calibration": [list(row) for row in measured.calibration],
        "base_rate": float(data.y.mean()),
    }
    name = f"model-{uuid.uuid4().hex[:16]}.joblib"
    sha256 = artifact_save(model, name=name)
    with transaction.atomic():
        _registry_lock()
        latest = ModelVersion.objects.aggregate(Max("version"))
        version = ModelVersion.objects.create(
            version=(latest["version__max"] or 0) + 1,
            algorithm=algorithm,
            params={
                "model": {
                    key: value
                    for key, value in model.get_params()["model"].get_params().items()
                    if isinstance(value, int | float | str | bool | type(None))
                },
                "folds": folds,
                "gap_rows": horizon * len(symbols),
                "seed": seed,
            },
            features=list(FEATURES),
            symbols=list(symbols),
            interval=BAR_INTERVAL,
            horizon_bars=horizon,
            train_start=data.times[0],
            train_end=data.times[-1],
            rows=len(data.x),
            metrics=version_metrics,
            feature_importance=importance,
            drift_reference=reference,
            artifact=name,
            artifact_sha256=sha256,
            training_seconds=time.perf_counter() - began,
            state=ModelVersion.State.SHADOW,
            state_reason="trained: in shadow until it beats the active model out of sample",
            created_at=timezone.now(),
        )
    _shadows_trim(newest=version)
    if progress is not None:
        progress("saved", 1, 1)
    logger.info(
        "model v%s trained (%s, %s rows, out-of-sample AUC %s, Brier %.4f)",
        version.version,
        algorithm,
        version.rows,
        version_metrics["auc"],
        measured.brier,
    )
    return version


def _shadows_trim(*, newest: ModelVersion) -> None:
    """Retire the oldest shadow models beyond ``MAX_SHADOWS`` (never the active one)."""
    older = ModelVersion.objects.filter(state=ModelVersion.State.SHADOW).order_by("-version")[
        MAX_SHADOWS:
    ]
    for version in older:
        try:
            model_retire(
                version,
                actor="the registry",
                reason=f"superseded by newer shadow models (v{newest.version} registered)",
                expected_state=ModelVersion.State.SHADOW,
            )
        except ModelStateInvalid as error:  # promoted or retired meanwhile: leave it be
            logger.info("shadow trim skipped: %s", error)


def model_retrain(*, now: datetime | None = None) -> ModelVersion:
    """The scheduled retrain: the last ``training_days`` of every traded symbol's bars."""
    from django.conf import settings

    end = now or timezone.now()
    config = ml_config()
    return model_train(
        symbols=list(settings.SYMBOLS), start=end - timedelta(days=config.training_days), end=end
    )


# --- promotion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionCheck:
    passes: bool
    reason: str
    samples: int  # shared resolved predictions
    brier_candidate: float | None
    brier_incumbent: float | None
    incumbent: str  # "v<n>" or "base rate"
    independent: int = 0  # non-overlapping outcomes among them (see ``promotion_check``)


def _resolved(version: ModelVersion, *, since: datetime | None = None) -> pd.DataFrame:
    rows = Prediction.objects.filter(model_version=version, outcome__isnull=False)
    if since is not None:
        rows = rows.filter(as_of__gte=since)
    return pd.DataFrame(
        list(rows.values_list("symbol", "as_of", "probability", "outcome")),
        columns=["symbol", "as_of", "probability", "outcome"],
    )


def _independent(shared: pd.DataFrame, *, horizon: int) -> int:
    """How many non-overlapping outcomes ``shared`` holds: predictions a minute apart with a
    15-bar horizon share 14 of their 15 bars, so per symbol only one per horizon counts."""
    if shared.empty:
        return 0
    minutes = (
        pd.to_datetime(shared["as_of"], utc=True).astype("int64") // 60_000_000_000
    ).to_numpy()
    buckets = pd.DataFrame({"symbol": shared["symbol"].to_numpy(), "bucket": minutes // horizon})
    return len(buckets.drop_duplicates())


def promotion_check(candidate: ModelVersion, *, config: MLConfig | None = None) -> PromotionCheck:
    """Does ``candidate`` beat the active model, on the same resolved live predictions, by the
    configured margin of Brier score? With no active model the bar is the base-rate forecast:
    always the frequency of rises in the candidate's training window (known before any live
    outcome; 0.5 when unknown), over the candidate's own predictions. A base rate taken from
    the live outcomes themselves would be a forecast made in hindsight: after a run of falls
    it scores perfectly and no model could ever beat it.

    The minimum sample counts *independent* outcomes: overlapping horizons (a prediction every
    minute, each over 15 bars) are counted once per horizon and symbol. Models with different
    horizons answer different questions and are never compared."""
    config = config or ml_config()
    active = (
        ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE)
        .exclude(pk=candidate.pk)
        .first()
    )
    incumbent = f"v{active.version}" if active is not None else "base rate"

    def refused(reason: str, samples: int = 0) -> PromotionCheck:
        return PromotionCheck(
            passes=False,
            reason=reason,
            samples=samples,
            brier_candidate=None,
            brier_incumbent=None,
            incumbent=incumbent,
        )

    if active is not None and active.horizon_bars != candidate.horizon_bars:
        return refused(
            f"v{candidate.version} predicts {candidate.horizon_bars} bars ahead and the active "
            f"v{active.version} {active.horizon_bars}: different questions, never compared "
            f"(retire v{active.version} to let v{candidate.version} prove itself against the "
            "base rate)"
        )
    mine = _resolved(candidate)
    if active is not None and not mine.empty:
        theirs = _resolved(active, since=mine["as_of"].min())
        shared = mine.merge(theirs, on=["symbol", "as_of"], suffixes=("", "_incumbent"))
        p_incumbent = shared["probability_incumbent"].to_numpy(dtype=float)
    else:
        shared = mine
        base_rate = candidate.metrics.get("base_rate")
        if not isinstance(base_rate, int | float) or not 0 <= base_rate <= 1:
            base_rate = 0.5
        p_incumbent = np.full(len(shared), float(base_rate))
    if shared.empty:
        return refused(f"no resolved predictions shared with the {incumbent} yet")
    y = shared["outcome"].to_numpy(dtype=float)
    p = shared["probability"].to_numpy(dtype=float)
    independent = _independent(shared, horizon=candidate.horizon_bars)
    brier_candidate = float(np.mean((p - y) ** 2))
    brier_incumbent = float(np.mean((p_incumbent - y) ** 2))
    passes, reason = insights.promotion_decision(
        brier_candidate,
        brier_incumbent,
        independent,
        margin=config.promotion_margin,
        min_samples=config.promotion_min_samples,
    )
    return PromotionCheck(
        passes=passes,
        reason=(
            f"against the {incumbent}: {reason} "
            f"({len(y)} shared predictions, {independent} independent outcomes)"
        ),
        samples=len(y),
        brier_candidate=brier_candidate,
        brier_incumbent=brier_incumbent,
        incumbent=incumbent,
        independent=independent,
    )


def _change_reason(text: str) -> str:
    """The history's reason column holds 100 characters; the full text is in state_reason."""
    return text if len(text) <= 100 else text[:99] + "…"


def _registry_lock() -> None:
    """Serialise promotions, retirements and new versions (the settings row is the lock)."""
    ml_config()
    MLConfig.objects.select_for_update().get(pk=1)


def model_promote(version: ModelVersion, *, actor: str, now: datetime | None = None) -> None:
    """Make ``version`` the active model if it passes ``promotion_check`` and its artifact
    loads; the active one is retired. Raises ``ModelStateInvalid`` (nothing changed)
    otherwise."""
    moment = now or timezone.now()
    try:
        with transaction.atomic():
            _registry_lock()
            locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
            if locked.state != ModelVersion.State.SHADOW:
                raise ModelStateInvalid(
                    f"v{locked.version} is {locked.state}: only shadow models promote"
                )
            check = promotion_check(locked)
            if not check.passes:
                raise ModelStateInvalid(f"v{locked.version} stays in shadow: {check.reason}")
            try:
                artifact_load(
                    name=locked.artifact, sha256=locked.artifact_sha256, features=locked.features
                )
            except ArtifactInvalid as error:
                raise ModelStateInvalid(
                    f"v{locked.version} stays in shadow: its artifact cannot be used ({error})"
                ) from None
            for previous in ModelVersion.objects.select_for_update().filter(
                state=ModelVersion.State.ACTIVE
            ):
                previous.state = ModelVersion.State.RETIRED
                previous.retired_at = moment
                previous.state_reason = f"replaced by v{locked.version} ({actor})"
                previous._change_reason = _change_reason(previous.state_reason)  # type: ignore[attr-defined]
                previous.save(update_fields=["state", "retired_at", "state_reason"])
            locked.state = ModelVersion.State.ACTIVE
            locked.promoted_at = moment
            locked.state_reason = f"promoted by {actor}: {check.reason}"
            locked._change_reason = _change_reason(locked.state_reason)  # type: ignore[attr-defined]
            locked.save(update_fields=["state", "promoted_at", "state_reason"])
    except IntegrityError:  # another process made a model active meanwhile
        raise ModelStateInvalid(
            f"v{version.version} stays in shadow: another model became active meanwhile"
        ) from None
    version.refresh_from_db()
    logger.warning("model v%s promoted by %s: %s", version.version, actor, check.reason)


def model_retire(
    version: ModelVersion,
    *,
    actor: str,
    reason: str,
    now: datetime | None = None,
    expected_state: str | None = None,
) -> None:
    """Retire ``version`` (shadow or active: an active one stops trading at once). With
    ``expected_state``, only if it is still in that state (checked under the lock)."""
    if not reason.strip():
        raise ModelStateInvalid("say why the model is retired")
    with transaction.atomic():
        _registry_lock()
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.state == ModelVersion.State.RETIRED:
            raise ModelStateInvalid(f"v{locked.version} is already retired")
        if expected_state is not None and locked.state != expected_state:
            raise ModelStateInvalid(
                f"v{locked.version} is {locked.state} now, not {expected_state}"
            )
        locked.state = ModelVersion.State.RETIRED
        locked.retired_at = now or timezone.now()
        locked.state_reason = f"retired by {actor}: {reason.strip()}"
        locked._change_reason = _change_reason(locked.state_reason)  # type: ignore[attr-defined]
        locked.save(update_fields=["state", "retired_at", "state_reason"])
    version.refresh_from_db()


def promotions_review(*, now: datetime | None = None) -> list[ModelVersion]:
    """With ``auto_promote`` on, promote the best shadow model that passes the rule."""
    config = ml_config()
    if not config.auto_promote:
        return []
    passing = [
        (check.brier_candidate, version)
        for version in ModelVersion.objects.filter(state=ModelVersion.State.SHADOW)
        for check in [promotion_check(version, config=config)]
        if check.passes and check.brier_candidate is not None
    ]
    if not passing:
        return []
    best = min(passing, key=lambda pair: (pair[0], -pair[1].version))[1]
    try:
        model_promote(best, actor="the promotion rule", now=now)
    except ModelStateInvalid as error:  # the state moved under us; the next review decides
        logger.info("automatic promotion skipped: %s", error)
        return []
    return [best]


# --- scoring -------------------------------------------------------------------------------------


def scorable_versions() -> list[ModelVersion]:
    return list(
        ModelVersion.objects.filter(
            state__in=[ModelVersion.State.SHADOW, ModelVersion.State.ACTIVE]
        ).order_by("version")
    )


def artifact_failed(version: ModelVersion, error: ArtifactInvalid) -> None:
    """An unusable artifact: an incident, and if it is the active model's, the ML source is
    switched off (the other sources trade on) until an operator switches it back on."""
    active = version.state == ModelVersion.State.ACTIVE
    incident = incident_open(
        component=COMPONENT,
        code=f"artifact-invalid-v{version.version}",
        severity=Incident.Severity.CRITICAL if active else Incident.Severity.WARNING,
        message=(
            f"model v{version.version} cannot be scored: {error}."
            + (" The ML signal source is switched off." if active else "")
        ),
        context={"version": version.version, "artifact": version.artifact, "state": version.state},
    )
    if active:
        if incident.severity != Incident.Severity.CRITICAL:  # opened while it was a shadow
            Incident.objects.filter(pk=incident.pk).update(severity=Incident.Severity.CRITICAL)
        SignalSource.objects.filter(name=ML_SOURCE, enabled=True).update(enabled=False)
    logger.error("model v%s artifact invalid: %s", version.version, error)


def predictions_score(
    *,
    symbol: str,
    as_of: datetime,
    requested_at: datetime,
    now: Callable[[], datetime] | None = None,
) -> list[Prediction]:
    """Score ``symbol``'s features at the bar closed at ``as_of`` with every shadow and active
    model; one ``Prediction`` per model and bar (scoring twice changes nothing)."""
    clock = now or timezone.now
    versions = scorable_versions()
    if not versions:
        return []
    bars = bars_frame(symbol, end=as_of, limit=SCORING_BARS)
    if bars.empty or bars.index[-1] != pd.Timestamp(as_of):
        logger.warning("no %s bar closed at %s to score", symbol, as_of)
        return []
    try:
        row = features(bars).iloc[[-1]]
    except BarsInvalid as error:
        logger.error("%s bars up to %s cannot be scored: %s", symbol, as_of, error)
        return []
    close = MarketBar.objects.filter(
        symbol=symbol, interval=BAR_INTERVAL, close_time=as_of
    ).values_list("close", flat=True)[0]
    made: list[Prediction] = []
    for version in versions:
        columns = list(version.features)
        missing = [name for name in columns if name not in row.columns]
        if missing or not bool(np.isfinite(row[columns].to_numpy(dtype=float)).all()):
            logger.info("v%s cannot score %s yet: warm-up bars missing", version.version, symbol)
            continue
        try:
            model = artifact_load(
                name=version.artifact, sha256=version.artifact_sha256, features=columns
            )
            with single_threaded():
                probability = float(model.predict_proba(row[columns])[0, 1])
            if not 0 <= probability <= 1:
                raise ArtifactInvalid(f"it predicted {probability!r}, not a probability")
        except ArtifactInvalid as error:
            artifact_failed(version, error)
            continue
        except Exception as error:  # one model's failure must not stop the others' scoring
            artifact_failed(version, ArtifactInvalid(f"scoring raised {error!r}"))
            continue
        scored_at = clock()
        with transaction.atomic():
            prediction, created = Prediction.objects.get_or_create(
                model_version=version,
                symbol=symbol,
                as_of=as_of,
                defaults={
                    "horizon_bars": version.horizon_bars,
                    "probability": probability,
                    "close": close,
                    "features": {name: float(row[name].iloc[0]) for name in columns},
                    "requested_at": requested_at,
                    "scored_at": scored_at,
                    "latency_ms": (scored_at - requested_at).total_seconds() * 1000,
                },
            )
            if created:
                # The Firestore mirror of this model's newest prediction, with the same commit.
                prediction_mirror(model_version_id=version.pk, symbol=symbol)
        if created:
            made.append(prediction)
            incident_resolve(component=COMPONENT, code=f"artifact-invalid-v{version.version}")
    if made:
        live_push(
            event="mlinsights.prediction",
            data={"predictions": [prediction_as_dict(p) for p in made]},
        )
    return made


def prediction_as_dict(prediction: Prediction) -> dict[str, Any]:
    return {
        "id": prediction.pk,
        "version": prediction.model_version.version,
        "state": prediction.model_version.state,
        "symbol": prediction.symbol,
        "as_of": prediction.as_of.isoformat(),
        "horizon_bars": prediction.horizon_bars,
        "probability": round(prediction.probability, 4),
        "latency_ms": round(prediction.latency_ms, 1),
        "outcome": prediction.outcome,
        "void": prediction.resolved_at is not None and prediction.outcome is None,
    }


def scoring_request(*, symbols: Sequence[str], at: datetime) -> int:
    """From the executor: queue scoring on the ML queue for each symbol's newest closed bar,
    once per bar. Never waits on a down broker and never raises into the tick (a database or
    Redis error is logged: the next bar asks again); returns how many were queued."""
    queued = 0
    try:
        with transaction.atomic():
            if not ModelVersion.objects.filter(
                state__in=[ModelVersion.State.SHADOW, ModelVersion.State.ACTIVE]
            ).exists():
                return 0
            client = redis_client()
            for symbol in symbols:
                if _scoring_queue(client=client, symbol=symbol, at=at):
                    queued += 1
    except Exception:  # scoring is an extra: the tick's trading must go on without it
        logger.exception("could not queue ML scoring; the tick carries on")
    return queued


def _unseen_by(version: ModelVersion, *, bar_open: datetime) -> bool:
    """``version``'s training window, labels included (``train_end`` is the last labelled
    bar; its label looked ``horizon_bars`` further), ended before the bar opening then."""
    return version.train_end + timedelta(seconds=BAR_SECONDS * version.horizon_bars) <= bar_open


def replay_model_as_of(at: datetime) -> ModelVersion | None:
    """In a replay's database (``routing.replay``): make the model that was active in live at
    ``at`` the only one not retired, so it alone is scored and traded, as it was then. Only a
    model whose training window ended before the bar just closed qualifies, so a model never
    scores a bar its training saw. Returns it (None: no model then)."""
    if replay_active() is None:
        raise RuntimeError("the registry is rewound only in a replay's database")
    bar_open = at - timedelta(seconds=BAR_SECONDS)
    candidates = (
        ModelVersion.objects.filter(
            promoted_at__isnull=False, promoted_at__lte=at, created_at__lte=at
        )
        .filter(Q(retired_at__isnull=True) | Q(retired_at__gt=at))
        .order_by("-promoted_at")
    )
    then = next((v for v in candidates if _unseen_by(v, bar_open=bar_open)), None)
    current = ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).first()
    if current != then:
        with transaction.atomic():
            ModelVersion.objects.exclude(state=ModelVersion.State.RETIRED).update(
                state=ModelVersion.State.RETIRED
            )
            if then is not None:
                ModelVersion.objects.filter(pk=then.pk).update(state=ModelVersion.State.ACTIVE)
    if then is not None:
        then.state = ModelVersion.State.ACTIVE
    return then


def replay_scoring(*, symbols: Sequence[str], at: datetime) -> int:
    """The replay's scoring step: each symbol's bar just closed by ``at`` scored now, in the
    tick (simulated time stands still while it runs), by the model of that moment; its
    ``scored_at`` is ``at``, never before the bar closed. A symbol whose newest bar is older
    (a gap in its bars) is scored only if that bar too is unseen by the model. Returns how
    many were made."""
    version = replay_model_as_of(at)
    if version is None:
        return 0
    made = 0
    for symbol in symbols:
        newest = (
            MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
            .order_by("-open_time")
            .values_list("open_time", "close_time")
            .first()
        )
        if newest is not None and _unseen_by(version, bar_open=newest[0]):
            made += len(
                predictions_score(symbol=symbol, as_of=newest[1], requested_at=at, now=lambda: at)
            )
    return made


def _scoring_queue(*, client: Any, symbol: str, at: datetime) -> bool:
    newest = (
        MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
        .order_by("-open_time")
        .values_list("close_time", flat=True)
        .first()
    )
    if newest is None:
        return False
    key = redis_key("ml-score-queued", symbol, str(int(newest.timestamp() * 1000)))
    if not client.set(key, "1", nx=True, ex=3600):
        return False
    try:
        current_app.send_task(
            "mlinsights.tasks.prediction_score_task",
            kwargs={"symbol": symbol, "as_of": newest.isoformat(), "requested_at": at.isoformat()},
            queue="ml",
            retry=False,
            ignore_result=True,
            expires=BAR_SECONDS,
        )
    except Exception:  # a down broker must not stop a tick; the next bar asks again
        client.delete(key)
        logger.exception("could not queue scoring of %s", symbol)
        return False
    return True


# --- the ML signal source -------------------------------------------------------------------------


@dataclass(frozen=True)
class MLView:
    prediction: Prediction | None
    reason: str


def stale_count(symbol: str) -> int:
    """How many of the active models' predictions for ``symbol`` the ML source ignored as stale."""
    return Prediction.objects.filter(symbol=symbol, stale=True).count()


def ml_prediction_for_signal(*, symbol: str, at: datetime, max_age_seconds: int) -> MLView:
    """The active model's newest prediction for ``symbol`` made on a bar closed by ``at``, when
    it is fresh (its bar closed at most ``max_age_seconds`` ago) and no signal used it yet.
    A stale one is ignored and counted (flagged ``stale``, once per prediction)."""
    active = ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).first()
    if active is None:
        return MLView(None, "no active model")
    latest = (
        Prediction.objects.filter(model_version=active, symbol=symbol, as_of__lte=at)
        .select_related("model_version")
        .order_by("-as_of")
        .first()
    )
    if latest is None:
        return MLView(None, f"no prediction of v{active.version} for {symbol} yet")
    if latest.signals.exists():
        return MLView(None, "the latest prediction already made its signal")
    age = (at - latest.as_of).total_seconds()
    if age > max_age_seconds:
        # Counted once per prediction: only the update that flips the flag logs it.
        if Prediction.objects.filter(pk=latest.pk, stale=False).update(stale=True):
            logger.warning(
                "ML prediction for %s is stale (%.0f s old, max %s s): ignored",
                symbol,
                age,
                max_age_seconds,
            )
        return MLView(None, f"latest prediction is {age:.0f} s old (max {max_age_seconds} s)")
    return MLView(latest, f"v{active.version} P(rise)={latest.probability:.4f}, {age:.0f} s old")


# --- outcomes and insights ------------------------------------------------------------------------


def outcomes_backfill(*, now: datetime | None = None) -> int:
    """Resolve every prediction whose horizon has passed: did the close of the bar that closes
    ``horizon`` minutes later end above the close the prediction was made at? Returns how many
    were resolved.

    A prediction is resolved **void** (``resolved_at`` set, no outcome, left out of every
    score) when that bar is missing (a gap in the venue's bars: an earlier bar would give a
    wrong answer) or the close did not move (neither a rise nor a fall: the label of training
    leaves those out too)."""
    moment = now or timezone.now()
    pending = pd.DataFrame(
        list(
            Prediction.objects.filter(resolved_at__isnull=True, as_of__lte=moment).values_list(
                "id", "symbol", "as_of", "horizon_bars", "close"
            )
        ),
        columns=["id", "symbol", "as_of", "horizon_bars", "close"],
    )
    if pending.empty:
        return 0
    pending["target"] = pending["as_of"] + pd.to_timedelta(
        pending["horizon_bars"] * BAR_SECONDS, unit="s"
    )
    updates: list[Prediction] = []
    for symbol, group in pending.groupby("symbol"):
        bars = list(
            MarketBar.objects.filter(
                symbol=symbol,
                interval=BAR_INTERVAL,
                close_time__gte=group["as_of"].min(),
                close_time__lte=group["target"].max(),
            )
            .order_by("close_time")
            .values_list("close_time", "close")
        )
        newest = (
            MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL)
            .aggregate(Max("close_time"))
            .get("close_time__max")
        )
        if not bars or newest is None:
            continue
        times = np.array([bar[0].timestamp() for bar in bars])
        closes = np.array([float(bar[1]) for bar in bars])
        targets = np.array([t.timestamp() for t in group["target"]])
        ready = targets <= newest.timestamp()
        position = np.searchsorted(times, targets, side="right") - 1
        # The bar found must be the one closing at the target, not an earlier one.
        found = (position >= 0) & (times[np.maximum(position, 0)] > targets - BAR_SECONDS)
        start = np.array([float(c) for c in group["close"]])
        for row_id, ok, exact, at_index, entry in zip(
            group["id"], ready, found, position, start, strict=True
        ):
            if not ok:
                continue
            realised = math.log(closes[at_index] / entry) if exact else None
            void = realised is None or realised == 0
            updates.append(
                Prediction(
                    pk=int(row_id),
                    outcome=None if void else (1.0 if realised and realised > 0 else 0.0),
                    outcome_return=realised,
                    resolved_at=moment,
                )
            )
    Prediction.objects.bulk_update(
        updates, ["outcome", "outcome_return", "resolved_at"], batch_size=1000
    )
    return len(updates)


def _thin(values: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``points`` evenly spread entries (the last one always kept)."""
    if len(values) <= points:
        return np.arange(len(values))
    return np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def insights_compute(version: ModelVersion, *, now: datetime) -> dict[str, Any]:
    """The ML Insights aggregates of ``version`` (plain JSON: floats, strings, lists)."""
    resolved = list(
        Prediction.objects.filter(model_version=version, outcome__isnull=False)
        .order_by("-as_of", "-id")
        .values_list("as_of", "probability", "outcome")[:INSIGHT_ROWS]
    )
    resolved.reverse()
    times = [row[0] for row in resolved]
    p = np.array([row[1] for row in resolved], dtype=float)
    y = np.array([row[2] for row in resolved], dtype=float)
    live: dict[str, Any] = {
        "samples": 0,
        "brier": None,
        "hit_rate": None,
        "auc": None,
        "base_rate": None,
        "climatology_brier": None,
        "brier_skill": None,
    }
    curves: dict[str, Any] = {"window": None, "time": [], "hit_rate": [], "brier": []}
    calibration: list[insights.CalibrationBin] = []
    if len(y):
        live = {
            key: _finite(value) if isinstance(value, float) else value
            for key, value in insights.summary(y, p).items()
        }
        calibration = insights.calibration(y, p)
        # A quarter of the predictions while there are fewer than 4 windows' worth, so an
        # early curve still has points to draw.
        window = max(1, min(ROLLING_WINDOW, len(y) // 4))
        hit, brier = insights.rolling_scores(y, p, window)
        full = np.flatnonzero(np.isfinite(hit))  # windows that are full
        keep = full[_thin(full)]
        curves = {
            "window": window,
            "time": [times[i].isoformat() for i in keep],
            "hit_rate": [float(hit[i]) for i in keep],
            "brier": [float(brier[i]) for i in keep],
        }
    recent = list(
        Prediction.objects.filter(model_version=version)
        .select_related("model_version")
        .order_by("-as_of", "-id")[:RECENT_PREDICTIONS]
    )
    live_rows = list(
        Prediction.objects.filter(
            model_version=version, as_of__gte=now - timedelta(hours=DRIFT_HOURS)
        ).values_list("features", flat=True)
    )
    drift: dict[str, Any] = {}
    if version.drift_reference:
        values = insights.psi(version.drift_reference, pd.DataFrame(live_rows))
        drift = {
            name: {
                "psi": _finite(value) if value is not None else None,
                "level": insights.drift_level(value),
            }
            for name, value in values.items()
        }
    latencies = np.array(
        list(
            Prediction.objects.filter(model_version=version)
            .order_by("-id")
            .values_list("latency_ms", flat=True)[:500]
        ),
        dtype=float,
    )
    promotion = None
    if version.state == ModelVersion.State.SHADOW:
        check = promotion_check(version)
        promotion = {
            "passes": check.passes,
            "reason": check.reason,
            "samples": check.samples,
            "brier": check.brier_candidate,
            "brier_incumbent": check.brier_incumbent,
            "incumbent": check.incumbent,
        }
    return {
        "version": version.version,
        "state": version.state,
        "algorithm": version.algorithm,
        "horizon_bars": version.horizon_bars,
        "trained": {
            "start": version.train_start.isoformat(),
            "end": version.train_end.isoformat(),
            "rows": version.rows,
            "metrics": version.metrics,
        },
        "live": live,
        "calibration": calibration,
        "curves": curves,
        "importance": sorted(
            ({"feature": k, "importance": v} for k, v in version.feature_importance.items()),
            key=lambda item: -float(item["importance"]),
        ),
        "drift": drift,
        "drift_rows": len(live_rows),
        "recent": [prediction_as_dict(row) for row in recent],
        "predictions": Prediction.objects.filter(model_version=version).count(),
        "pending": Prediction.objects.filter(
            model_version=version, resolved_at__isnull=True
        ).count(),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "p95": float(np.percentile(latencies, 95)) if len(latencies) else None,
        },
        "promotion": promotion,
    }


def insights_refresh(*, now: datetime | None = None) -> list[InsightCache]:
    """Recompute and cache the insights of every shadow and active model; push them."""
    moment = now or timezone.now()
    caches: list[InsightCache] = []
    for version in scorable_versions():
        data = insights_compute(version, now=moment)
        cache, _ = InsightCache.objects.update_or_create(
            model_version=version, defaults={"data": data, "computed_at": moment}
        )
        caches.append(cache)
    if caches:
        live_push(
            event="mlinsights.insights",
            data={
                "computed_at": moment.isoformat(),
                "versions": [c.model_version.version for c in caches],
            },
        )
    return caches


def predictions_prune(*, now: datetime | None = None) -> int:
    """Delete predictions older than ``PREDICTION_RETENTION`` that no signal was made from, a
    batch at a time; return how many were deleted."""
    cutoff = (now or timezone.now()) - PREDICTION_RETENTION
    old = Prediction.objects.filter(as_of__lt=cutoff, signals__isnull=True)
    ids = list(old.order_by("as_of").values_list("pk", flat=True)[:PRUNE_BATCH])
    if not ids:
        return 0
    deleted, _ = Prediction.objects.filter(pk__in=ids).delete()
    return deleted


def ml_cycle(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic ML upkeep: outcomes, automatic promotion, insights, then old predictions
    pruned (in that order)."""
    resolved = outcomes_backfill(now=now)
    promoted = promotions_review(now=now)
    caches = insights_refresh(now=now)
    pruned = predictions_prune(now=now)
    return {
        "resolved": resolved,
        "promoted": len(promoted),
        "insights": len(caches),
        "pruned": pruned,
    }
