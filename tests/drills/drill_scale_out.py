"""Scale-out: two executor workers, two ML workers and one beat on the same Redis and
PostgreSQL, trading (an external signal every few seconds) and scoring (a model in shadow, so
every tick queues scoring of each new bar) for minutes; halfway through one executor worker is
SIGKILLed and not started again.

No tick may run twice (two ticks overlapping in time, or one tick message run twice), no order
may be routed twice, the ML work must spread over both ML workers, and the remaining executor
worker must keep ticking after the kill."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings

from doctor.models import Heartbeat
from mlinsights.models import ModelVersion
from mlinsights.services import MIN_TRAINING_ROWS
from mlinsights.tasks import model_retrain_task
from routing.signal_services import signal_submit
from tests.drills.base import Checks, Verdict, rounded, seconds_text
from tests.drills.executor_checks import (
    EXECUTOR_LOCK,
    bars_seed,
    generous_limits,
    lock_holder_in,
    tasks_done,
    ticks_between,
    ticks_overlapping,
    venue_compare,
)
from tests.drills.stack import DrillError, Stack, wait_until
from tradingsite.locks import skipped_count

TICK_TASK = "routing.tasks.executor_tick_task"
SCORE_TASK = "mlinsights.tasks.prediction_score_task"
SIGNAL_EVERY = 3.0
MODEL_TIMEOUT = 180.0


def _model_ready() -> bool:
    return ModelVersion.objects.filter(
        state__in=[ModelVersion.State.SHADOW, ModelVersion.State.ACTIVE]
    ).exists()


def run(stack: Stack, *, bounded: bool) -> Verdict:
    seconds = 75.0 if bounded else 240.0
    interval = float(settings.EXECUTOR_INTERVAL_SECONDS)
    generous_limits()
    # Enough history for the sizer's volatility and the retrain's minimum rows.
    bars_seed(stack.binance, stack.symbols, bars=MIN_TRAINING_ROWS // len(stack.symbols) + 200)
    stack.start_processes()
    up = datetime.now(UTC)
    wait_until(lambda: ticks_between(up), timeout=120, what="the first ticks")
    # A model in shadow, so every tick queues scoring of each new bar: trained by the retrain
    # task on the ML queue, as an operator's "train now" does.
    model_retrain_task.apply_async()
    wait_until(_model_ready, timeout=MODEL_TIMEOUT, what="a model from the retrain task")
    checks = Checks()
    started = datetime.now(UTC)
    began = time.time()
    skipped_before = skipped_count(EXECUTOR_LOCK)
    killed_at: float | None = None
    killed_mid_tick = False
    side = "BUY"
    signals = 0
    while time.time() - began < seconds:
        signal_submit(symbol="BTCUSDT", side=side, strength=Decimal(1), source="drill")
        signals += 1
        side = "SELL" if side == "BUY" else "BUY"
        if killed_at is None and time.time() - began >= seconds / 2:
            # Mid-tick when it can be: while a process of this worker holds the executor lock.
            with contextlib.suppress(DrillError):
                wait_until(
                    lambda: lock_holder_in(stack.workers[0]),
                    timeout=30,
                    interval=0.005,
                    what="a tick on the first worker",
                )
            killed_mid_tick = lock_holder_in(stack.workers[0])
            stack.workers[0].kill()
            killed_at = time.time()
        time.sleep(SIGNAL_EVERY)
    time.sleep(3 * interval)  # the last signals routed, the last scoring done
    survivors = [child for child in stack.children() if child is not stack.workers[0]]
    dead = [child.name for child in survivors if not child.running]
    ticks = ticks_between(started)
    overlapping = ticks_overlapping(ticks)
    kill_moment = datetime.fromtimestamp(killed_at or time.time(), tz=UTC)
    before_kill = [tick for tick in ticks if tick.ended_at <= kill_moment]
    after_kill = [tick for tick in ticks if tick.started_at > kill_moment]
    gaps_after = [
        (later.ended_at - earlier.ended_at).total_seconds()
        for earlier, later in itertools.pairwise(after_kill)
    ]
    first_after = (
        after_kill[0].ended_at.timestamp() - killed_at if after_kill and killed_at else None
    )
    after_seconds = time.time() - (killed_at or time.time())

    executor_done = {child.name: tasks_done(child) for child in stack.workers}
    ml_done = {child.name: tasks_done(child) for child in stack.ml_workers}
    tick_runs: Counter[str] = Counter()
    for done in executor_done.values():
        for (task, task_id), count in done.items():
            if task == TICK_TASK:
                tick_runs[task_id] += count
    ticks_run_twice = sum(1 for count in tick_runs.values() if count > 1)
    ml_runs: Counter[str] = Counter()
    for done in ml_done.values():
        for (_, task_id), count in done.items():
            ml_runs[task_id] += count
    ml_run_twice = sum(1 for count in ml_runs.values() if count > 1)
    ml_tasks = {name: sum(done.values()) for name, done in ml_done.items()}
    scoring = {
        name: sum(count for (task, _), count in done.items() if task == SCORE_TASK)
        for name, done in ml_done.items()
    }
    tick_tasks = {
        name: sum(count for (task, _), count in done.items() if task == TICK_TASK)
        for name, done in executor_done.items()
    }
    queued = sum(
        int(metrics.get("scoring_queued") or 0)
        for metrics in Heartbeat.objects.filter(
            component="executor", created_at__gt=started
        ).values_list("metrics", flat=True)
    )
    comparison = venue_compare(stack.binance)

    checks.check(not dead, f"stopped on their own: {', '.join(dead)}")
    checks.check(killed_at is not None, "the executor worker was never killed")
    checks.check(overlapping == 0, f"{overlapping} ticks overlapped another")
    checks.check(ticks_run_twice == 0, f"{ticks_run_twice} tick messages ran twice")
    checks.check(comparison.duplicates == 0, f"{comparison.duplicates} duplicate orders")
    checks.check(comparison.sent_twice == 0, f"{comparison.sent_twice} orders routed twice")
    checks.check(
        comparison.unknown_to_us == 0, f"{comparison.unknown_to_us} venue orders unknown to us"
    )
    checks.check(comparison.accepted > 0, "no order was routed")
    checks.check(
        all(tick_tasks.values()), f"not every executor worker ran ticks: {dict(tick_tasks)}"
    )
    checks.check(
        len(ml_tasks) >= 2 and all(ml_tasks.values()),
        f"the ML work did not spread: tasks per ML worker {dict(ml_tasks)}",
    )
    checks.check(sum(scoring.values()) > 0, "no scoring ran")
    checks.check(ml_run_twice == 0, f"{ml_run_twice} ML tasks ran twice")
    # Ticking on after the kill: at least half the rate of before (the machine may be slow;
    # one worker less must not stop or starve the ticks).
    before_seconds = (killed_at or time.time()) - began
    rate_before = len(before_kill) / before_seconds if before_seconds > 0 else 0.0
    rate_after = len(after_kill) / after_seconds if after_seconds > 0 else 0.0
    checks.check(
        rate_after >= rate_before / 2 and len(after_kill) > 0,
        f"only {len(after_kill)} ticks in the {after_seconds:.0f} s after the kill "
        f"(before: {len(before_kill)} in {before_seconds:.0f} s)",
    )
    figures = {
        "seconds": round(seconds, 1),
        "schedule interval seconds": interval,
        "ticks": len(ticks),
        "ticks before the kill": len(before_kill),
        "ticks after the kill": len(after_kill),
        "seconds after the kill": round(after_seconds, 1),
        "seconds from the kill to the next tick": rounded(first_after),
        "longest gap between ticks after the kill": rounded(max(gaps_after, default=None)),
        "ticks per second before the kill": round(rate_before, 2),
        "ticks per second after the kill": round(rate_after, 2),
        "killed while its tick held the lock": killed_mid_tick,
        "ticks overlapping another": overlapping,
        "tick messages run twice": ticks_run_twice,
        "tick tasks per executor worker": tick_tasks,
        "tick runs skipped for a held lock": skipped_count(EXECUTOR_LOCK) - skipped_before,
        "external signals": signals,
        "orders accepted by the venue": comparison.accepted,
        "duplicate orders": comparison.duplicates,
        "orders routed twice": comparison.sent_twice,
        "venue orders unknown to us": comparison.unknown_to_us,
        "orders left unresolved": len(comparison.unresolved),
        "scoring requests queued by ticks": queued,
        "scoring tasks per ML worker": scoring,
        "ML tasks per ML worker": ml_tasks,
        "ML tasks run twice": ml_run_twice,
    }
    summary = (
        f"{len(stack.workers)} executor + {len(stack.ml_workers)} ML workers for "
        f"{seconds:.0f} s, one executor worker killed halfway: {len(ticks)} ticks "
        f"({len(after_kill)} after the kill, next {seconds_text(first_after)} later), "
        f"{overlapping} overlapping, {ticks_run_twice} run twice; {comparison.accepted} venue "
        f"orders, {comparison.duplicates} duplicates; ML tasks per worker "
        f"{'/'.join(str(n) for n in ml_tasks.values())} (scoring "
        f"{'/'.join(str(n) for n in scoring.values())})"
    )
    return checks.verdict("scale_out", summary, figures, bounded=bounded)
