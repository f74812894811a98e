"""PostgreSQL connections dropped while trading: ``pg_terminate_backend`` on every session of
the drill's database, repeatedly, timed to land while a tick holds the executor's lock. Every
process must keep running (or replace its pool children by itself), ticks must resume after
each drop, errors must be logged cleanly, the web server must answer ``/healthz`` and
``/readyz`` again, and no order may be half-written: after reconciliation every order the
venue accepted is one local row with the venue's id and status, no local order is left in an
intermediate state, and no client order id reached the venue twice."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection

from doctor.models import Heartbeat
from routing.models import Order
from routing.orders import PENDING_ABANDONED_AFTER, STATUS_FROM_VENUE
from tests.drills.base import Checks, Verdict
from tests.drills.common import first_heartbeat_after, ticks_running
from tests.drills.stack import DrillError, Stack, wait_until
from tests.drills.trading import SignalFeeder, orders_routed_since, trading_prepare
from tradingsite.redisconn import redis_client, redis_key

T = TypeVar("T")
RESUME_TIMEOUT = 120.0
# Reconciliation runs every minute (and resolves unknown orders): two runs and slack.
# An intent a dropped tick recorded but never sent is closed by the scheduled reconciliation
# once it is older than any live tick can be, then within its minute.
RESOLVE_TIMEOUT = PENDING_ABANDONED_AFTER.total_seconds() + 120.0
# Seconds into a tick at which the drops land, in turn (a tick takes a few hundred ms).
INTO_TICK = (0.0, 0.1, 0.05, 0.2, 0.02)
INTERMEDIATE = (Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.UNKNOWN)
TASK_FAILED = re.compile(r"Task (\S+)\[[^\]]+\] raised unexpected: (\S+)")
CONNECTION_ERROR = re.compile(
    r"(OperationalError|InterfaceError|terminating connection|server closed the connection|"
    r"connection (is )?closed|connection already closed)",
    re.IGNORECASE,
)


def _db(fn: Callable[[], T]) -> T:
    """``fn()`` in this process, reopening its own connection when a drop killed it."""
    for attempt in range(5):
        try:
            return fn()
        except DatabaseError:
            connection.close()
            if attempt == 4:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _mid_tick(stack: Stack, into: float, timeout: float = 30.0) -> bool:
    """Wait until a tick holds the executor's lock and has opened its database session (Celery
    closes a task's connections before it starts, so the tick's session is a new one), then
    ``into`` seconds more: the drop lands inside the tick, at a different step each time."""
    client = redis_client()
    key = redis_key("lock", "executor-tick")
    admin = urlunsplit(urlsplit(stack.database.url)._replace(path="/postgres"))
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            if not client.exists(key):
                time.sleep(0.01)
                continue
            seen = datetime.now(UTC) - timedelta(seconds=0.2)
            while client.exists(key) and time.monotonic() < deadline:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_start > %s",
                    [stack.database.name, seen],
                ).fetchone()
                if row is not None and row[0]:
                    time.sleep(into)
                    return True
                time.sleep(0.01)
    return False


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def run(stack: Stack, *, bounded: bool) -> Verdict:
    drops = 3 if bounded else 10
    gap_seconds = 12.0 if bounded else 20.0
    checks = Checks()
    trading_prepare(stack)
    stack.start_processes()
    ticks_running()
    feeder = SignalFeeder(stack.symbols).start()
    log_start = {c.name: c.log_path.stat().st_size for c in stack.children()}
    resumes: list[float] = []
    terminated: list[int] = []
    mid_tick = 0
    try:
        warm = datetime.now(UTC)
        wait_until(
            lambda: _db(lambda: orders_routed_since(warm)) >= 2,
            timeout=120,
            what="the first routed orders",
        )
        for number in range(drops):
            mid_tick += _mid_tick(stack, INTO_TICK[number % len(INTO_TICK)])
            terminated.append(stack.database.terminate_connections())
            dropped = time.time()
            dropped_at = datetime.fromtimestamp(dropped, tz=UTC)
            try:
                seen = wait_until(
                    lambda t=dropped_at: _db(lambda: first_heartbeat_after("executor", t)),  # type: ignore[misc]
                    timeout=RESUME_TIMEOUT,
                    what="a tick after the connections were dropped",
                    interval=0.2,
                )
                resumes.append(seen.timestamp() - dropped)
            except DrillError as error:
                checks.check(False, str(error))
            time.sleep(gap_seconds)
        last_drop = datetime.now(UTC)
        # Four schedule intervals after the last drop: at most one tick may be missing.
        settle_seconds = 4 * settings.EXECUTOR_INTERVAL_SECONDS
        time.sleep(settle_seconds)
        ticks_after = _db(
            lambda: Heartbeat.objects.filter(component="executor", created_at__gt=last_drop).count()
        )
    finally:
        feeder.stop()
    routed_during = _db(lambda: orders_routed_since(warm))
    # Every order resolved by the product itself (ticks, and reconciliation every minute).
    resolved = True
    started = time.monotonic()
    try:
        wait_until(
            lambda: not _db(lambda: Order.objects.filter(status__in=INTERMEDIATE).exists()),
            timeout=RESOLVE_TIMEOUT,
            what="every order out of pending/submitting/unknown",
            interval=1.0,
        )
    except DrillError:
        resolved = False
    resolve_seconds = time.monotonic() - started
    stuck = _db(
        lambda: [
            f"{o.client_order_id} {o.status} ({o.last_error[:80]})"
            for o in Order.objects.filter(status__in=INTERMEDIATE)
        ]
    )
    checks.check(resolved and not stuck, f"{len(stuck)} order(s) stuck: {'; '.join(stuck[:3])}")

    comparison = _orders_compared(stack)
    for what, items in comparison.items():
        checks.check(not items, f"{len(items)} {what}: {', '.join(items[:3])}")

    # Every process still there (celery replaces its pool children itself).
    dead = [child.name for child in stack.children() if not child.running]
    checks.check(not dead, f"process(es) exited: {', '.join(dead)}")
    checks.check(
        ticks_after >= 3,
        f"only {ticks_after} ticks in the {settle_seconds} s (4 intervals) after the last drop",
    )
    healthz = _get(f"{stack.web_url}/healthz")
    readyz_deadline = time.monotonic() + 60
    readyz = _get(f"{stack.web_url}/readyz")
    while readyz != 200 and time.monotonic() < readyz_deadline:
        time.sleep(1)
        readyz = _get(f"{stack.web_url}/readyz")
    checks.check(healthz == 200, f"/healthz answered {healthz}")
    checks.check(readyz == 200, f"/readyz answered {readyz}")

    failed_tasks, connection_lines, tracebacks = _log_counts(stack, log_start)
    # Clean: a dropped connection fails a task with a database error, nothing else.
    unexpected = {
        f"{task} {error}": n
        for (task, error), n in failed_tasks.items()
        if not CONNECTION_ERROR.search(error)
    }
    checks.check(not unexpected, f"tasks failed with other errors: {unexpected}")
    hit = sum(n for (_, e), n in failed_tasks.items() if CONNECTION_ERROR.search(e))
    checks.check(hit > 0, "no drop landed inside a running task (nothing was exercised)")
    figures: dict[str, Any] = {
        "drops": drops,
        "drops landed while a tick held the lock": mid_tick,
        "sessions terminated per drop": terminated,
        "worst seconds to the next tick": round(max(resumes), 1) if resumes else None,
        "seconds to the next tick": [round(r, 1) for r in resumes],
        "orders routed during the drill": routed_during,
        "venue orders accepted": len(stack.binance.accepted_orders),
        "seconds for every order to resolve": round(resolve_seconds, 1),
        "orders stuck": len(stuck),
        **{k: len(v) for k, v in comparison.items()},
        "task failures with a connection error": hit,
        "task failures with another error": sum(unexpected.values()),
        "connection error lines in the logs": connection_lines,
        "tracebacks in the logs": tracebacks,
        "feeder submissions refused by a dropped connection": sum(feeder.failures.values()),
        "ticks in the 4 intervals after the last drop": ticks_after,
        "process starts": {c.name: c.starts for c in stack.children()},
        "/healthz": healthz,
        "/readyz": readyz,
    }
    summary = (
        f"{drops} drops ({mid_tick} mid-tick, {sum(terminated)} sessions); ticks back within "
        f"{figures['worst seconds to the next tick']} s; {routed_during} orders, "
        f"{len(stuck)} stuck, {len(comparison['duplicate client ids at the venue'])} duplicated, "
        f"{len(comparison['venue orders without a local row'])} unknown here; "
        f"{figures['task failures with a connection error']} task(s) failed on the dropped "
        f"connection, no process lost; /healthz {healthz}, /readyz {readyz}"
    )
    return checks.verdict("postgres_drop", summary, figures, bounded=bounded)


def _orders_compared(stack: Stack) -> dict[str, list[str]]:
    accepted = stack.binance.accepted_orders
    counts = Counter(order.client_order_id for order in accepted)
    local = _db(lambda: {o.client_order_id: o for o in Order.objects.all()})
    venue_status = {o.client_order_id: o for o in stack.binance.orders}
    unknown = sorted({cid for cid in counts if cid not in local})
    mismatched: list[str] = []
    for order in accepted:
        row = local.get(order.client_order_id)
        if row is None or order.kind != "order":
            continue  # algo (stop) orders change venue ids when they trigger
        if row.venue_order_id != str(order.order_id):
            mismatched.append(f"{row.client_order_id} venue id {row.venue_order_id!r}")
            continue
        venue = venue_status.get(order.client_order_id)
        if venue is None:
            continue
        expected = {str(k): v for k, v in STATUS_FROM_VENUE.items()}.get(venue.status)
        if expected != row.status:
            mismatched.append(f"{row.client_order_id} {row.status} here, {venue.status} there")
    placed_here = {
        cid
        for cid, row in local.items()
        if row.status in (Order.Status.FILLED, Order.Status.PARTIALLY_FILLED)
        and row.type in (Order.Type.MARKET, Order.Type.LIMIT)
    }
    lost = sorted(cid for cid in placed_here if cid not in counts)
    return {
        "duplicate client ids at the venue": sorted(c for c, n in counts.items() if n > 1),
        "venue orders without a local row": unknown,
        "orders recorded differently from the venue": mismatched,
        "orders filled here but unknown to the venue": lost,
    }


def _log_counts(stack: Stack, start: dict[str, int]) -> tuple[Counter[tuple[str, str]], int, int]:
    failed: Counter[tuple[str, str]] = Counter()
    connection_lines = tracebacks = 0
    for child in stack.children():
        with child.log_path.open("rb") as log:
            log.seek(start.get(child.name, 0))
            text = log.read().decode(errors="replace")
        for match in TASK_FAILED.finditer(text):
            failed[(match.group(1), match.group(2))] += 1
        connection_lines += len(CONNECTION_ERROR.findall(text))
        tracebacks += text.count("Traceback (most recent call last)")
    return failed, connection_lines, tracebacks
