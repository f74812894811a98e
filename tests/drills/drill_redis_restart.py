"""Redis restarted: the drill's own redis-server stops (every key gone: queues, locks, channel
groups) and comes back on the same port. Workers, beat and the dashboard's websockets must
recover without a person: ticks resume, every component's heartbeat returns, and an open page
receives live pushes again."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.drills.base import Checks, Verdict, seconds_text
from tests.drills.common import (
    DashboardWatcher,
    first_heartbeat_after,
    heartbeats_since,
    ticks_running,
    viewer_cookie,
)
from tests.drills.stack import DrillError, Stack, wait_until
from tests.drills.tasks import drill_sleep

RECOVERY_TIMEOUT = 120.0


def run(stack: Stack, *, bounded: bool) -> Verdict:
    outage_seconds = 5.0 if bounded else 30.0
    restarts = 2 if bounded else 3
    stack.start_processes()
    ticks_running()
    watcher = DashboardWatcher(stack, viewer_cookie()).start()
    checks = Checks()
    recoveries: dict[str, list[float]] = {
        name: [] for name in ("executor", "worker", "ml", "beat", "websocket push")
    }
    try:
        wait_until(lambda: watcher.connects, timeout=30, what="the dashboard websocket")
        for _ in range(restarts):
            # An acknowledged-late task is running when Redis goes: its message is unacked,
            # the case that used to stop the worker for good when the connection closed.
            held = stack.workers[0].log(10_000_000).count("drill_sleep[")
            drill_sleep.apply_async(kwargs={"seconds": outage_seconds + 5}, queue="default")
            wait_until(
                lambda h=held: _started_held_task(stack, h),  # type: ignore[misc]
                timeout=30,
                what="the worker to start the held task",
            )
            stack.redis.stop()
            time.sleep(outage_seconds)
            stack.redis.start()
            back = time.time()
            back_at = datetime.fromtimestamp(back, tz=UTC)
            for component in ("executor", "worker", "ml", "beat"):
                try:
                    seen = wait_until(
                        lambda c=component, t=back_at: first_heartbeat_after(c, t),  # type: ignore[misc]
                        timeout=RECOVERY_TIMEOUT,
                        what=f"a {component} heartbeat after Redis came back",
                    )
                    recoveries[component].append(seen.timestamp() - back)
                except DrillError as error:
                    checks.check(False, str(error))
            try:
                pushed = wait_until(
                    lambda t=back: watcher.first_after(t, "doctor.heartbeat"),  # type: ignore[misc]
                    timeout=RECOVERY_TIMEOUT,
                    what="a live push on the open dashboard after Redis came back",
                )
                recoveries["websocket push"].append(pushed - back)
            except DrillError as error:
                checks.check(False, str(error))
        stack.assert_running()
        settle = datetime.now(UTC)
        time.sleep(10)
        ticks_after = heartbeats_since("executor", settle)
    finally:
        watcher.stop()
    checks.check(ticks_after >= 5, f"only {ticks_after} ticks in the 10 s after recovery")
    worst = {name: max(values) if values else None for name, values in recoveries.items()}
    figures = {
        "restarts": restarts,
        "outage seconds each": outage_seconds,
        **{f"worst seconds to {name} after restart": value for name, value in worst.items()},
        "websocket reconnects": max(len(watcher.connects) - 1, 0),
        "ticks in 10 s after the last recovery": ticks_after,
        "processes still running": len(stack.children()),
    }
    summary = (
        f"{restarts} restart(s) of {outage_seconds:.0f} s; ticks back in "
        f"{seconds_text(worst['executor'])}, beat {seconds_text(worst['beat'])}, workers "
        f"{seconds_text(worst['worker'])}/{seconds_text(worst['ml'])}, dashboard pushes "
        f"{seconds_text(worst['websocket push'])} "
        f"({figures['websocket reconnects']} reconnects); no person involved"
    )
    return checks.verdict("redis_restart", summary, figures, bounded=bounded)


def _started_held_task(stack: Stack, before: int) -> bool:
    stack.assert_running()  # a worker that died at the last restart fails the drill here
    return stack.workers[0].log(10_000_000).count("drill_sleep[") > before
