from __future__ import annotations

import os
from typing import Any

from celery import Task, shared_task

from doctor.alerts import (
    ALERT_MAX_ATTEMPTS,
    ALERT_MAX_DELAYS,
    DeliveryOutcome,
    alert_deliver,
    alert_give_up,
    alerts_sweep,
)
from doctor.services import heartbeat_record, heartbeats_prune


@shared_task(bind=True, acks_late=True, ignore_result=True, soft_time_limit=10, time_limit=20)
def heartbeat_task(self: Task[Any, Any], component: str) -> None:
    heartbeat_record(
        component=component,
        hostname=self.request.hostname or "",
        metrics={
            "pid": os.getpid(),
            "queue": (self.request.delivery_info or {}).get("routing_key"),
        },
    )


@shared_task(acks_late=True, ignore_result=True)
def heartbeats_prune_task() -> int:
    return heartbeats_prune()


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=60)
def doctor_snapshot_task() -> None:
    """The seed's ``cron_doctor_cache``: run every check and cache the snapshot."""
    from doctor.snapshots import snapshot_take_scheduled

    snapshot_take_scheduled()


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=None,  # bounded below: HTTP attempts on the alert's row, delays here
    soft_time_limit=45,
    time_limit=60,
)
def alert_send_task(self: Task[Any, Any], alert_id: int, dispatch: int = 0) -> str:
    """Deliver one alert; retried after back-off (or ``Retry-After``, or the rate limit's
    delay) until it is sent or failed. Safe to run twice: a sent alert is not sent again, and
    a chain a re-queue replaced (``dispatch``) stops."""
    delivery = alert_deliver(alert_id, dispatch=dispatch)
    if delivery.retry_in is None:
        return delivery.outcome.value
    if self.request.retries >= ALERT_MAX_ATTEMPTS + ALERT_MAX_DELAYS:
        alert_give_up(
            alert_id, error=f"{delivery.error} (not sent after {self.request.retries} retries)"
        )
        return DeliveryOutcome.FAILED.value
    raise self.retry(countdown=delivery.retry_in)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=30, time_limit=45)
def alerts_sweep_task() -> int:
    """Queue again the pending alerts whose task never came (the safety net under on_commit)."""
    return alerts_sweep()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def doctor_run_task() -> dict[str, Any]:
    """A doctor run an operator asked for (API): the snapshot's id, status and confidence
    are the task's result, for /api/v1/tasks/<id>/."""
    from doctor.models import DoctorSnapshot
    from doctor.snapshots import snapshot_take

    snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.API)
    return {"snapshot": snapshot.pk, "status": snapshot.status, "confidence": snapshot.confidence}
