"""ML in replay: each bar is scored only by the model live traded at that moment, and only
if that model's training window ended before the bar; never scored before the bar closed.

Real models (scikit-learn, trained on stored bars through ``model_train``), real artifacts in
a MODEL_DIR of the test's own, PostgreSQL and Redis. The registry's history (when each
model was created, promoted and retired) is written into the rows as live would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mlinsights.models import ModelVersion, Prediction
from mlinsights.registry import artifact_cache_clear
from mlinsights.services import model_train
from routing.models import MarketBar, ReplayRun, Signal, SignalSource
from routing.replay import replay_create, replay_start
from routing.signal_services import signal_sources_sync
from tests.mlinsights.markets import market
from tradingsite.replaydb import replay_database, replay_database_drop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("global_limits")]

BARS = 2_000
MINUTE = timedelta(minutes=1)
MS = timedelta(milliseconds=1)


@pytest.fixture(autouse=True)
def model_dir(tmp_path: Path, settings: Any) -> Iterator[Path]:
    settings.MODEL_DIR = tmp_path / "models"
    artifact_cache_clear()
    yield tmp_path / "models"
    artifact_cache_clear()


def store_klines(frame: Any) -> list[datetime]:
    """``frame``'s bars as Binance klines (a close 59.999 s after its open); their closes."""

    def price(value: object) -> Decimal:
        return Decimal(f"{value:.8f}")

    closes: list[datetime] = []
    rows = []
    for stamp, row in zip(frame.index, frame.itertuples(), strict=True):
        opened = stamp.to_pydatetime() - MINUTE
        closes.append(opened + MINUTE - MS)
        rows.append(
            MarketBar(
                symbol="BTCUSDT",
                interval="1m",
                open_time=opened,
                close_time=opened + MINUTE - MS,
                open=price(row.open),
                high=price(row.high),
                low=price(row.low),
                close=price(row.close),
                volume=price(row.volume),
            )
        )
    MarketBar.objects.bulk_create(rows, batch_size=5000)
    return closes


def trained(closes: list[datetime], upto: int, version_history: dict[str, Any]) -> ModelVersion:
    version = model_train(
        symbols=["BTCUSDT"],
        start=closes[0],
        end=closes[upto],
        algorithm="logistic_regression",
        horizon=5,
        folds=2,
    )
    ModelVersion.objects.filter(pk=version.pk).update(**version_history)
    version.refresh_from_db()
    return version


def test_replay_scores_each_bar_with_the_model_of_that_moment_and_no_later_one() -> None:
    closes = store_klines(market(planted=True, seed=5, n=BARS))
    signal_sources_sync()
    SignalSource.objects.exclude(name="ml").update(enabled=False)
    ml = SignalSource.objects.get(name="ml")
    ml.params = {**ml.params, "min_edge": 0.0}
    ml.save()

    # live's registry history: v1 trained on bars up to 1200, promoted at 1300; v2 trained
    # up to 1300 replaced it at 1350; a shadow never promoted; and a row whose promotion
    # (1360) came before its training window ended (1400): a model may never score a bar
    # its training saw, whatever the rows say.
    v1 = trained(
        closes,
        1200,
        {
            "created_at": closes[1210],
            "promoted_at": closes[1300],
            "retired_at": closes[1350],
            "state": ModelVersion.State.RETIRED,
        },
    )
    v2 = trained(
        closes,
        1300,
        {"created_at": closes[1305], "promoted_at": closes[1350], "state": "retired"},
    )
    shadow = trained(closes, 1900, {"created_at": closes[1910]})
    trap = trained(
        closes,
        1400,
        {"created_at": closes[1355], "promoted_at": closes[1360], "state": "active"},
    )
    # its training window, labels included, ended with bar 1400
    assert trap.train_end + trap.horizon_bars * MINUTE == closes[1400]

    run = replay_create(start=closes[1280], end=closes[1450], symbols=["BTCUSDT"], actor="t")
    try:
        replay_start(run.pk)
        run.refresh_from_db()
        assert run.status == ReplayRun.Status.DONE, run.error
        with replay_database(run.pk):
            predictions = list(Prediction.objects.select_related("model_version"))
            signals = list(Signal.objects.filter(source="ml").select_related("prediction"))
    finally:
        replay_database_drop(run.pk)

    assert predictions
    by_version: dict[int, list[Prediction]] = {}
    for prediction in predictions:
        version = prediction.model_version
        bar_open = prediction.as_of - MINUTE + MS
        # never a model that saw the bar (its labels looked horizon bars past train_end),
        # never scored before the bar closed
        assert version.train_end + version.horizon_bars * MINUTE <= bar_open
        assert prediction.scored_at >= prediction.as_of
        assert prediction.requested_at >= prediction.as_of
        # only the model live traded then
        assert version.promoted_at is not None
        assert version.promoted_at <= prediction.scored_at
        assert version.retired_at is None or prediction.scored_at < version.retired_at
        by_version.setdefault(version.version, []).append(prediction)

    assert shadow.version not in by_version
    as_of = {number: sorted(p.as_of for p in rows) for number, rows in by_version.items()}
    # v1 from its promotion until v2 replaced it; v2 until the trap's training window ended
    assert as_of[v1.version][0] == closes[1300]
    assert as_of[v1.version][-1] == closes[1349]
    assert as_of[v2.version][0] == closes[1350]
    assert as_of[trap.version][0] > closes[1400]
    assert as_of[v2.version][-1] == as_of[trap.version][0] - MINUTE
    # one prediction per bar from v1's promotion on: none missing, none twice
    assert len(predictions) == len({p.as_of for p in predictions}) == 1450 - 1300 + 1
    # the ML signals traded those predictions, never before they existed
    assert signals
    for signal in signals:
        assert signal.prediction is not None
        assert signal.created_at >= signal.prediction.scored_at
    # the live registry and predictions are untouched
    assert not Prediction.objects.exists()
    assert ModelVersion.objects.get(pk=trap.pk).state == ModelVersion.State.ACTIVE
