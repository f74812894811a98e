"""ML tasks: all on the ML queue (``mlinsights.tasks.*`` is routed there), never beside a tick.

Scoring is short and idempotent (one prediction per model and bar): acknowledged late. The
retrain is long: acknowledged on receipt and single-flight, so a retrain never runs twice at
once and a crashed one is not replayed (the next day's runs).
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from mlinsights.services import ml_cycle, model_retrain, predictions_score
from mlinsights.training import TrainingInvalid
from tradingsite.locks import single_flight

logger = logging.getLogger(__name__)

TRAIN_LOCK = "ml-train"
TRAIN_LOCK_SECONDS = 2 * 3600
CYCLE_LOCK = "ml-cycle"


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=30, time_limit=45)
def prediction_score_task(*, symbol: str, as_of: str, requested_at: str) -> None:
    # Queued by the executor once per closed bar (the message expires after one bar).
    predictions_score(
        symbol=symbol,
        as_of=datetime.fromisoformat(as_of),
        requested_at=datetime.fromisoformat(requested_at),
    )


@shared_task(soft_time_limit=TRAIN_LOCK_SECONDS, time_limit=TRAIN_LOCK_SECONDS + 60)
def model_retrain_task() -> dict[str, object]:
    # Daily by beat (and from the admin or the API): a new shadow model from the latest bars.
    # The result is what /api/v1/tasks/<id>/ reports.
    with single_flight(TRAIN_LOCK, ttl_seconds=TRAIN_LOCK_SECONDS) as run:
        if not run.acquired:
            logger.warning("retrain skipped: a training is already running")
            return {"trained": False, "reason": "a training is already running"}
        try:
            version = model_retrain()
        except TrainingInvalid as error:
            logger.error("scheduled retrain did not train: %s", error)
            return {"trained": False, "reason": str(error)}
    logger.info("scheduled retrain registered v%s in shadow", version.version)
    return {"trained": True, "version": version.version}


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def ml_cycle_task() -> None:
    # Every minute by beat: outcomes back-filled, the promotion rule, the insights cache.
    with single_flight(CYCLE_LOCK, ttl_seconds=180) as run:
        if not run.acquired:
            return
        ml_cycle()
