from __future__ import annotations

import os
from typing import Any

from celery import Task, shared_task

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
