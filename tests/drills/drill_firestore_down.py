"""Firestore emulator down while trading: the drill's emulator stops for a while (its
in-memory documents go with it) while the executor ticks and routes orders, so the outbox
fills. Ticks must not notice (rate within 80 % of before, no tick failing), the outbox must
drain by itself once the emulator is back, and no document may be lost: every document the
outbox had to write since the outage began is in the emulator with its newest payload, the
same as the database's (``mirror_compare``)."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Max

from doctor.models import Heartbeat
from tests.drills.base import Checks, Verdict
from tests.drills.common import ticks_running
from tests.drills.stack import Child, DrillError, Stack, wait_until
from tests.drills.trading import SignalFeeder, orders_routed_since, trading_prepare
from tradingsite.firestore import BACKOFF_CAP_SECONDS, mirror_compare, outbox_drain
from tradingsite.guard import firestore_client_for_writing
from tradingsite.mirrors import COLLECTION_NAMES
from tradingsite.models import OutboxEntry

DRAIN_TIMEOUT = BACKOFF_CAP_SECONDS + 120.0  # the drain's longest back-off, and slack
TICK_RATE_FLOOR = 0.8
TICK_FAILED = re.compile(r"Task routing\.tasks\.executor_tick_task\[[^\]]+\] raised")


@dataclass(frozen=True)
class TickWindow:
    ticks: int
    seconds: float
    mean_ms: float | None
    max_ms: float | None
    orders: int

    @property
    def per_minute(self) -> float:
        return 60.0 * self.ticks / self.seconds if self.seconds > 0 else 0.0


def tick_window(start: datetime, end: datetime) -> TickWindow:
    rows = list(
        Heartbeat.objects.filter(
            component="executor", created_at__gte=start, created_at__lt=end
        ).values_list("metrics", flat=True)
    )
    durations = [float(m["duration_ms"]) for m in rows if m.get("duration_ms") is not None]
    return TickWindow(
        ticks=len(rows),
        seconds=(end - start).total_seconds(),
        mean_ms=round(statistics.fmean(durations), 1) if durations else None,
        max_ms=max(durations) if durations else None,
        orders=sum(int(m.get("orders") or 0) for m in rows),
    )


class LogMark:
    """Byte offsets of the workers' logs, so a window's lines can be read back."""

    def __init__(self, children: list[Child]) -> None:
        self.offsets = {
            c.name: c.log_path.stat().st_size if c.log_path.exists() else 0 for c in children
        }

    def lines_since(self, children: list[Child], until: LogMark | None = None) -> str:
        text = []
        for child in children:
            if not child.log_path.exists():
                continue
            with child.log_path.open("rb") as log:
                log.seek(self.offsets.get(child.name, 0))
                end = until.offsets.get(child.name) if until is not None else None
                size = -1 if end is None else max(0, end - self.offsets.get(child.name, 0))
                text.append(log.read(size).decode(errors="replace"))
        return "\n".join(text)


def _waiting() -> Any:
    return OutboxEntry.objects.filter(sent_at__isnull=True, parked_at__isnull=True)


def run(stack: Stack, *, bounded: bool) -> Verdict:
    outage_seconds = 30.0 if bounded else 180.0
    baseline_seconds = 30.0 if bounded else 60.0
    if stack.firestore is None:
        raise DrillError("this drill needs the Firestore emulator")
    emulator = stack.firestore
    checks = Checks()
    trading_prepare(stack)
    stack.start_processes()
    ticks_running()
    feeder = SignalFeeder(stack.symbols).start()
    try:
        warm = datetime.now(UTC)
        wait_until(
            lambda: orders_routed_since(warm) >= 2, timeout=120, what="the first routed orders"
        )
        wait_until(lambda: not _waiting().exists(), timeout=120, what="the outbox to drain")
        # Before: a window of normal trading with the mirror up.
        before_start = datetime.now(UTC)
        time.sleep(baseline_seconds)
        before_end = datetime.now(UTC)
        before_log = LogMark(stack.workers)
        # The outage: the emulator stops (and forgets every document).
        stack.firestore.stop()
        down_at = datetime.now(UTC)
        peak_backlog = 0
        deadline = time.monotonic() + outage_seconds
        while time.monotonic() < deadline:
            peak_backlog = max(peak_backlog, _waiting().count())
            time.sleep(0.5)
        during_end = datetime.now(UTC)
        during_log = LogMark(stack.workers)
        emulator.start()
        back = time.monotonic()
        back_at = datetime.now(UTC)
        # Drained: every row waiting when the emulator came back has been sent.
        last_before_back = OutboxEntry.objects.filter(created_at__lte=back_at).aggregate(
            last=Max("id")
        )["last"]
        drained_at: float | None = None
        try:
            wait_until(
                lambda: not _waiting().filter(id__lte=last_before_back or 0).exists(),
                timeout=DRAIN_TIMEOUT,
                what="the outbox to drain after the emulator came back",
                interval=0.5,
            )
            drained_at = time.monotonic() - back
        except DrillError as error:
            checks.check(False, str(error))
        after_start = datetime.now(UTC)
        time.sleep(10)
        after_end = datetime.now(UTC)
        stack.assert_running()
    finally:
        feeder.stop()
    # Quiet the stack (no more ticks or drains), then send the last rows the final ticks left
    # and compare the emulator with the outbox and the database.
    if stack.beat is not None:
        stack.beat.stop()
    time.sleep(5)
    tail_rows = _waiting().count()
    for _ in range(20):
        report = outbox_drain(ignore_backoff=True, lock_wait_seconds=30.0)
        if report.remaining == 0 and report.ok:
            break
        time.sleep(1)
    before = tick_window(before_start, before_end)
    during = tick_window(down_at, during_end)
    after = tick_window(after_start, after_end)
    outage_log = before_log.lines_since(stack.workers, during_log)
    failed_during = len(TICK_FAILED.findall(outage_log))
    failed_total = len(TICK_FAILED.findall(LogMark([]).lines_since(stack.workers)))
    drain_failures = outage_log.count("Firestore outbox drain failed")

    lost, erased, owed, diff = _lost_documents(down_at)
    parked = OutboxEntry.objects.filter(parked_at__isnull=False).count()
    checks.check(
        during.per_minute >= TICK_RATE_FLOOR * before.per_minute,
        f"ticks slowed during the outage ({during.per_minute:.1f}/min against "
        f"{before.per_minute:.1f}/min before)",
    )
    checks.check(failed_during == 0, f"{failed_during} tick(s) failed during the outage")
    checks.check(during.orders > 0, "no order was routed during the outage")
    checks.check(peak_backlog > 0, "the outbox never filled during the outage")
    checks.check(drain_failures > 0, "the drain never noticed the outage")
    checks.check(after.ticks > 0, "no tick after the emulator came back")
    checks.check(not lost, f"{len(lost)} document(s) lost or stale: {', '.join(lost[:5])}")
    checks.check(parked == 0, f"{parked} outbox row(s) parked")
    stale = [f"{c.name}/{d}" for c in diff.collections for d in (*c.stale, *c.in_flight)]
    checks.check(not stale, f"the emulator differs from the database: {', '.join(stale[:5])}")
    figures: dict[str, Any] = {
        "outage seconds": outage_seconds,
        "ticks/min before": round(before.per_minute, 1),
        "ticks/min during the outage": round(during.per_minute, 1),
        "ticks/min after": round(after.per_minute, 1),
        "mean tick ms before": before.mean_ms,
        "mean tick ms during the outage": during.mean_ms,
        "longest tick ms before": before.max_ms,
        "longest tick ms during the outage": during.max_ms,
        "orders routed during the outage": during.orders,
        "ticks failed during the outage": failed_during,
        "ticks failed in the whole drill": failed_total,
        "failed drain attempts during the outage": drain_failures,
        "outbox backlog at its peak (rows)": peak_backlog,
        "seconds to drain after the emulator came back": (
            round(drained_at, 1) if drained_at is not None else None
        ),
        "rows left by the last ticks, drained at the end": tail_rows,
        "documents owed since the outage began": owed,
        "documents lost or stale": len(lost),
        "documents erased by the emulator's restart (unchanged since)": erased,
        "parked rows": parked,
    }
    summary = (
        f"{outage_seconds:.0f} s down while trading: {before.per_minute:.0f} ticks/min before, "
        f"{during.per_minute:.0f} during ({before.mean_ms} → {during.mean_ms} ms a tick, "
        f"{failed_during} failed, {during.orders} orders); backlog peaked at {peak_backlog} "
        f"rows, drained {_s(drained_at)} after the emulator came back; "
        f"{len(lost)} of {owed} documents lost"
    )
    return checks.verdict("firestore_down", summary, figures, bounded=bounded)


def _lost_documents(down_at: datetime) -> tuple[list[str], int, int, Any]:
    """Documents the outbox owed since the outage began that are missing or stale in the
    emulator; how many older ones its restart erased; how many were owed; the mirror diff."""
    client = firestore_client_for_writing()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in COLLECTION_NAMES:
        for snapshot in client.collection(name).stream(retry=None, timeout=60):
            found[(name, snapshot.id)] = snapshot.to_dict() or {}
    newest: dict[tuple[str, str], OutboxEntry] = {}
    for row in OutboxEntry.objects.order_by("id"):
        newest[(row.collection, row.doc_id)] = row
    lost: list[str] = []
    erased = owed = 0
    for key, row in newest.items():
        written_before_outage = row.sent_at is not None and row.sent_at <= down_at
        if written_before_outage and key not in found:
            erased += 1  # the in-memory emulator forgot it; nothing was owed since
            continue
        owed += 1
        if row.sent_at is None or found.get(key) != row.payload:
            lost.append("/".join(key))
    diff, _ = mirror_compare(client=client)
    return lost, erased, owed, diff


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
