from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from routing.executor import TickContext, executor_tick
from routing.runtime import venue_session
from tradingsite.locks import single_flight

logger = logging.getLogger(__name__)


def executor_run_once(*, now: datetime | None = None) -> dict[str, object] | None:
    """One tick under the single-flight lock; None when another tick holds it (counted)."""
    ttl = settings.EXECUTOR_INTERVAL_SECONDS * 6
    with single_flight("executor-tick", ttl_seconds=ttl) as run:
        if not run.acquired:
            logger.warning("executor tick skipped: the previous tick still holds the lock")
            return None
        moment = now or timezone.now()
        with venue_session(now_ms=int(moment.timestamp() * 1000)) as venue:
            context = TickContext(
                clock=(lambda: moment) if now is not None else timezone.now,
                venue=venue,
                symbols=tuple(settings.SYMBOLS),
            )
            report = executor_tick(context, renew=run.renew)
        return vars(report)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def executor_tick_task() -> None:
    # Acknowledged on receipt (not acks_late): a tick is not re-run after a crash; the next
    # scheduled one reconciles. Messages expire after one interval (see schedules).
    executor_run_once()
