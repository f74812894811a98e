from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from risk.models import RiskState
from risk.services import risk_snapshot_if_due

SNAPSHOT_EVERY = timedelta(minutes=5)


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=30, time_limit=60)
def risk_snapshot_periodic_task() -> int | None:
    """The periodic snapshot (changes are snapshotted as they happen); nothing before the
    account has a state."""
    if not RiskState.objects.exists():
        return None
    snapshot = risk_snapshot_if_due(every=SNAPSHOT_EVERY)
    return snapshot.pk if snapshot is not None else None
