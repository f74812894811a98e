from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from decimal import ROUND_CEILING
from typing import TypeVar

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from risk.selectors import limits_configured
from routing.executor import TickContext, executor_tick
from routing.health import health_cells_prune, router_health_refresh
from routing.models import ReplayRun
from routing.protection import flatten
from routing.reconcile import reconcile
from routing.replay import LOCK_SECONDS, replay_start
from routing.runtime import venue_session
from routing.venues import Venue
from tradingsite.locks import single_flight

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
Work = Callable[[Venue, Clock, Callable[[], None]], T]

# Start-up, before the first tick of every process: the account's mode, margin and leverage
# are set and verified, then the books are reconciled (afterwards on its own schedule).
_reconciled_since_start = False


def exchange_leverage() -> int:
    """The exchange leverage: enough for the configured max leverage (the risk checks hold
    the account to the configured value itself)."""
    return max(1, int(limits_configured().max_leverage.to_integral_value(ROUND_CEILING)))


def _under_executor_lock(what: str, now: datetime | None, work: Work[T]) -> T | None:
    """Run ``work(venue, clock, renew)`` holding the executor's single-flight lock, with the
    configured venue; None (logged and counted) when something else holds the lock."""
    with single_flight("executor-tick", ttl_seconds=settings.EXECUTOR_INTERVAL_SECONDS * 6) as run:
        if not run.acquired:
            logger.warning("%s skipped: the executor lock is held", what)
            return None
        moment = now or timezone.now()
        clock: Clock = (lambda: moment) if now is not None else timezone.now
        with venue_session(now_ms=int(moment.timestamp() * 1000), renew=run.renew) as venue:
            return work(venue, clock, run.renew)


def executor_run_once(*, now: datetime | None = None) -> dict[str, object] | None:
    """One tick (after the start-up reconciliation, the first time in this process)."""

    def work(venue: Venue, clock: Clock, renew: Callable[[], None]) -> dict[str, object]:
        global _reconciled_since_start
        symbols = tuple(settings.SYMBOLS)
        if not _reconciled_since_start:
            venue.account_prepare(symbols=symbols, leverage=exchange_leverage())
            reconcile(venue=venue, symbols=symbols, clock=clock, renew=renew)
            _reconciled_since_start = True
        context = TickContext(clock=clock, venue=venue, symbols=symbols)
        return vars(executor_tick(context, renew=renew))

    return _under_executor_lock("executor tick", now, work)


def reconcile_run_once(*, now: datetime | None = None) -> dict[str, object] | None:
    """Reconcile under the executor's lock (never beside a tick)."""

    def work(venue: Venue, clock: Clock, renew: Callable[[], None]) -> dict[str, object]:
        report = reconcile(venue=venue, symbols=tuple(settings.SYMBOLS), clock=clock, renew=renew)
        return asdict(report)

    return _under_executor_lock("reconciliation", now, work)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def executor_tick_task() -> None:
    # Acknowledged on receipt (not acks_late): a tick is not re-run after a crash; the next
    # one (after reconciling at start-up) carries on. Messages expire after one interval.
    executor_run_once()


RECONCILE_RETRY_SECONDS = 3
RECONCILE_RETRIES = 18  # about a minute: the next scheduled run takes over after that


@shared_task(bind=True, ignore_result=True, soft_time_limit=120, time_limit=180, max_retries=None)
def reconcile_task(self: Task) -> None:  # type: ignore[type-arg]
    # On the default queue (only executor_* tasks go to the executor queue): it shares the
    # tick's lock, not its worker, so a slow venue here never delays the executor's queue.
    # A tick holding the lock does not skip it: it is tried again between ticks, for about
    # a minute (ticks waiting on the venue's weight budget hold the lock most of a minute,
    # and a reconciliation skipped every time never ran at all: the exchange-faults drill).
    if reconcile_run_once() is None and self.request.retries < RECONCILE_RETRIES:
        raise self.retry(countdown=RECONCILE_RETRY_SECONDS)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def router_health_refresh_task() -> None:
    # Queued after fills commit and every minute by beat; a refresh already running (it holds
    # a lock) covers a queued one, and the next one catches up with anything left.
    report = router_health_refresh()
    if report.ran:
        health_cells_prune()


def flatten_run(*, actor: str, reason: str) -> list[str] | None:
    """``flatten`` under the executor's lock (between ticks): the orders' client ids, or None
    when the lock is held (the caller tries again)."""

    def work(venue: Venue, clock: Clock, renew: Callable[[], None]) -> list[str]:
        orders = flatten(
            venue=venue, symbols=tuple(settings.SYMBOLS), actor=actor, reason=reason, clock=clock
        )
        return [order.client_order_id for order in orders]

    return _under_executor_lock("flatten", None, work)


@shared_task(bind=True, ignore_result=True, soft_time_limit=120, time_limit=180, max_retries=None)
def flatten_task(self: Task, *, actor: str, reason: str) -> None:  # type: ignore[type-arg]
    # Requested by an operator on the dashboard, on the executor queue. An operator's flatten
    # is never dropped: while a tick holds the lock it is tried again every few seconds.
    if flatten_run(actor=actor, reason=reason) is None:
        raise self.retry(countdown=3)


REPLAY_SECONDS = 12 * 3600
REPLAY_SLOT = "replay-slot"
REPLAY_WAIT_SECONDS = 30


@shared_task(
    bind=True,
    ignore_result=True,
    soft_time_limit=REPLAY_SECONDS,
    time_limit=REPLAY_SECONDS + 60,
    max_retries=None,
)
def replay_task(self: Task, *, run_id: int) -> None:  # type: ignore[type-arg]
    # On the ML queue (never beside a tick), acknowledged on receipt: a lost worker leaves the
    # run at its last chunk, to be resumed, instead of the message starting it again. One
    # replay at a time on the workers (a slot lock), so the ML worker's other process stays
    # free for live scoring and training; a second one waits its turn.
    with single_flight(REPLAY_SLOT, ttl_seconds=LOCK_SECONDS) as slot:
        if not slot.acquired:
            raise self.retry(countdown=REPLAY_WAIT_SECONDS)
        if (
            replay_start(run_id, also_renew=slot.renew) is None
            and ReplayRun.objects.filter(pk=run_id, status=ReplayRun.Status.QUEUED).exists()
        ):
            # Its own lock is still held (an old worker letting go after a stop): again soon.
            raise self.retry(countdown=REPLAY_WAIT_SECONDS)
