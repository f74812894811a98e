"""Tasks only the drills' workers load (``--include tests.drills.tasks``)."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True, soft_time_limit=120, time_limit=150)
def drill_sleep(seconds: float) -> None:
    """Hold an unacknowledged message for ``seconds``: a drill breaks the broker meanwhile."""
    time.sleep(seconds)
