"""Celery tasks of the project package: draining the Firestore outbox."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from tradingsite.firestore import outbox_drain, outbox_prune_if_due


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=60)
def outbox_drain_task() -> dict[str, Any]:
    """Send waiting outbox rows (every few seconds; short and idempotent, hence acks_late).

    Single-flight: ``outbox_drain`` holds a Redis lock, so a run that finds another still
    sending returns at once instead of queueing behind it. Old sent rows are pruned hourly.
    """
    report = outbox_drain()
    pruned = outbox_prune_if_due()
    return {
        "written": report.written,
        "sent": report.sent,
        "parked": report.parked,
        "remaining": report.remaining,
        "skipped": report.skipped,
        "error": report.error,
        "pruned": pruned,
    }
