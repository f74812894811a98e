"""The doctor's checks, registered in one place (``CHECKS``), and the overall confidence.

Each check is a small function returning a ``Finding``: ok / warn / fail, one line of detail
and a confidence in [0, 1] (how sure the doctor is that this part is doing its job: 1 healthy,
0 broken, in between for "late", "degraded" or "not configured"). ``checks_run`` times each
check and turns an exception into a failed finding, so one broken part never hides the others.

The overall **doctor confidence** (``confidence_overall``, documented in docs/operations.md):

    confidence = min( Σ wᵢ·cᵢ / Σ wᵢ ,  min over critical checks of cᵢ )

a weighted mean of the check confidences, never above the lowest confidence of a *critical*
check (database, Redis, workers, executor, risk state): with the database down nothing else
matters, while a late model alone only dents the figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from doctor.models import Heartbeat, Incident

OK = "ok"
WARN = "warn"
FAIL = "fail"
STATUS_RANK = {OK: 0, WARN: 1, FAIL: 2}

# Confidence of a plain warning / failure (graded checks compute their own).
WARN_CONFIDENCE = 0.6
FAIL_CONFIDENCE = 0.0

QUEUES = ("executor", "default", "ml")
QUEUE_DEPTH_WARN = 50
QUEUE_DEPTH_FAIL = 500
HEARTBEAT_EVERY_SECONDS = 10  # worker, ml and beat heartbeats (tradingsite/schedules.py, beat.py)
BAR_WARN_SECONDS = 180
BAR_FAIL_SECONDS = 600
MODEL_WARN_AGE = timedelta(days=2)  # retrained daily
SKEW_WARN_MS = 1000
SKEW_FAIL_MS = 5000  # the recvWindow: signed requests start failing beyond it
WEIGHT_WARN = 0.5
WEIGHT_FAIL = 0.9
OUTBOX_LAG_WARN_SECONDS = 60
OUTBOX_LAG_FAIL_SECONDS = 600
OUTBOX_DRAINED_RECENTLY_SECONDS = 120
OUTBOX_TRIED_RECENTLY_SECONDS = 420  # longer than the drain's longest back-off (5 min)
WORKER_PING_TIMEOUT = 1.0


@dataclass(frozen=True)
class Finding:
    status: str
    detail: str
    confidence: float


def ok(detail: str, confidence: float = 1.0) -> Finding:
    return Finding(OK, detail, confidence)


def warn(detail: str, confidence: float = WARN_CONFIDENCE) -> Finding:
    return Finding(WARN, detail, confidence)


def fail(detail: str, confidence: float = FAIL_CONFIDENCE) -> Finding:
    return Finding(FAIL, detail, confidence)


@dataclass(frozen=True)
class CheckContext:
    now: datetime


@dataclass(frozen=True)
class Check:
    name: str
    label: str
    run: Callable[[CheckContext], Finding]
    weight: float = 1.0
    critical: bool = False
    # A failure opens a doctor incident (and so an alert). Off for checks that only restate
    # incidents already open (and already alerted) elsewhere.
    opens_incident: bool = True


@dataclass(frozen=True)
class CheckResult:
    name: str
    label: str
    status: str
    detail: str
    latency_ms: float
    confidence: float
    critical: bool
    weight: float = field(default=1.0, repr=False)
    opens_incident: bool = field(default=True, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "status": self.status,
            "detail": self.detail,
            "latency_ms": self.latency_ms,
            "confidence": self.confidence,
            "critical": self.critical,
        }


def _age_seconds(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def _graded_age(age: float, *, good: float, bad: float) -> float:
    """1 up to ``good`` seconds, falling linearly to 0 at ``bad``."""
    if age <= good:
        return 1.0
    if age >= bad:
        return 0.0
    return round(1 - (age - good) / (bad - good), 3)


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _newest_heartbeats(components: Iterable[str]) -> dict[str, datetime]:
    rows = (
        Heartbeat.objects.filter(component__in=list(components))
        .values("component")
        .annotate(newest=Max("created_at"))
    )
    return {row["component"]: row["newest"] for row in rows}


# --- the checks ----------------------------------------------------------------------------


def check_database(ctx: CheckContext) -> Finding:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return ok(f"{connection.vendor} answers")


def check_redis(ctx: CheckContext) -> Finding:
    from tradingsite.redisconn import redis_client

    client = redis_client()
    client.ping()
    used = client.info("memory").get("used_memory_human", "?")
    return ok(f"answers (memory {used})")


def check_workers(ctx: CheckContext) -> Finding:
    """Each queue has a live worker consuming it (a broadcast ping to the workers)."""
    from tradingsite.celery import app

    replies = app.control.inspect(timeout=WORKER_PING_TIMEOUT).active_queues() or {}
    consumed: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    for hostname, queues in replies.items():
        for queue in queues or []:
            if queue.get("name") in consumed:
                consumed[queue["name"]].append(hostname)
    missing = [queue for queue, hosts in consumed.items() if not hosts]
    described = ", ".join(f"{queue}: {len(hosts)}" for queue, hosts in consumed.items())
    if not replies:
        return fail("no worker answered: start the worker and ml processes")
    if "executor" in missing or "default" in missing:
        return fail(f"no worker consumes {', '.join(missing)} (workers per queue: {described})")
    if missing:
        return warn(f"no worker consumes {', '.join(missing)} (workers per queue: {described})")
    return ok(f"workers per queue: {described}")


def queue_depths() -> dict[str, int]:
    from tradingsite.celery import app

    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # The Redis transport's own count (every priority list, under the key prefix). Its
        # passive queue_declare cannot be used: it looks for the queue without the prefix.
        size: Callable[[str], int] = channel._size  # type: ignore[attr-defined]
        for queue in QUEUES:
            depths[queue] = int(size(queue))
    return depths


def check_queues(ctx: CheckContext) -> Finding:
    depths = queue_depths()
    described = ", ".join(f"{queue} {depth}" for queue, depth in depths.items())
    deepest = max(depths.values(), default=0)
    if deepest >= QUEUE_DEPTH_FAIL:
        return fail(f"messages waiting: {described}")
    if deepest >= QUEUE_DEPTH_WARN:
        return warn(f"messages waiting: {described}")
    return ok(f"messages waiting: {described}")


def check_beat(ctx: CheckContext) -> Finding:
    """Beat writes its own heartbeat from its loop (tradingsite/beat.py)."""
    age = _age_seconds(_newest_heartbeats(["beat"]).get("beat"), ctx.now)
    if age is None:
        return fail("no beat heartbeat yet: is the beat process running?")
    good, bad = 3 * HEARTBEAT_EVERY_SECONDS, 12 * HEARTBEAT_EVERY_SECONDS
    confidence = _graded_age(age, good=good, bad=bad)
    if age > bad:
        return fail(f"last beat heartbeat {_age_text(age)} ago: schedules are not being sent")
    if age > good:
        return warn(f"last beat heartbeat {_age_text(age)} ago", confidence)
    return ok(f"last beat heartbeat {_age_text(age)} ago")


def check_executor(ctx: CheckContext) -> Finding:
    newest = Heartbeat.objects.filter(component="executor").order_by("-created_at").first()
    if newest is None:
        return fail("the executor has not ticked yet")
    age = _age_seconds(newest.created_at, ctx.now) or 0.0
    interval = settings.EXECUTOR_INTERVAL_SECONDS
    good, bad = max(3 * interval, 15), max(12 * interval, 60)
    duration = newest.metrics.get("duration_ms")
    tail = f" (took {duration} ms)" if duration is not None else ""
    if age > bad:
        return fail(f"last tick {_age_text(age)} ago{tail}: the executor is not trading")
    if age > good:
        return warn(f"last tick {_age_text(age)} ago{tail}", _graded_age(age, good=good, bad=bad))
    return ok(f"last tick {_age_text(age)} ago{tail}")


def _binance_client() -> Any:
    from tradingsite.guard import binance_client_for_writing

    return binance_client_for_writing()


def check_venue(ctx: CheckContext) -> Finding:
    """Reachable, and its clock close to ours (signed requests fail past the recvWindow)."""
    if settings.VENUE != "binance":
        return ok("paper venue (in the database)")
    client = _binance_client()
    before = time.time() * 1000
    server_ms = int(client.futures_time()["serverTime"])
    after = time.time() * 1000
    skew = server_ms - (before + after) / 2
    detail = f"answers in {after - before:.0f} ms; clock skew {skew:+.0f} ms"
    if abs(skew) >= SKEW_FAIL_MS:
        return fail(detail + " (beyond the recvWindow)")
    if abs(skew) >= SKEW_WARN_MS:
        return warn(detail)
    return ok(detail)


def check_weight(ctx: CheckContext) -> Finding:
    """Request weight used this minute against the share of the limit we allow ourselves."""
    if settings.VENUE != "binance":
        return ok("paper venue: no request weight")
    from routing.runtime import BINANCE_WEIGHT_PER_MINUTE
    from routing.weights import WeightBudget

    budget = WeightBudget(BINANCE_WEIGHT_PER_MINUTE)
    used = budget.used(now_ms=int(ctx.now.timestamp() * 1000))
    share = used / budget.cap
    detail = f"{used} of {budget.cap} weight this minute ({share:.0%})"
    if share >= WEIGHT_FAIL:
        return fail(detail + ": requests will wait or earn 429s")
    if share >= WEIGHT_WARN:
        return warn(detail, round(1 - share, 3))
    return ok(detail)


def check_withdrawals(ctx: CheckContext) -> Finding:
    """On a live venue the API key must not be able to withdraw funds."""
    from tradingsite.guard import url_is_mainnet

    if settings.VENUE != "binance":
        return ok("paper venue: no API key")
    from tradingsite.guard import guard_context

    url = guard_context().binance_url
    client = _binance_client()
    if not url_is_mainnet(url):
        host = urlsplit(url).hostname or ""
        if host not in {"localhost"} and not host.startswith("127."):
            return ok("testnet key: cannot withdraw real funds")
        # A local test server answers the wallet route beside the futures ones.
        parts = urlsplit(url)
        client.MARGIN_API_URL = f"{parts.scheme}://{parts.netloc}/sapi"
    permissions = client.get_account_api_permissions()
    if permissions.get("enableWithdrawals"):
        return fail("the API key can withdraw funds: create a key without that permission")
    return ok("the API key cannot withdraw")


def check_reconciliation(ctx: CheckContext) -> Finding:
    from routing.models import Instrument
    from routing.reconcile import COMPONENT

    open_codes = list(
        Incident.objects.filter(component=COMPONENT, resolved_at__isnull=True).values_list(
            "code", "severity"
        )
    )
    halted = list(Instrument.objects.filter(trading_halted=True).values_list("symbol", flat=True))
    if halted:
        return fail(f"trading halted by a difference in {', '.join(sorted(halted))}")
    critical = [code for code, severity in open_codes if severity == Incident.Severity.CRITICAL]
    if critical:
        return fail(f"open differences: {', '.join(sorted(critical))}")
    if open_codes:
        return warn(f"open differences: {', '.join(sorted(code for code, _ in open_codes))}")
    return ok("books match the venue")


def check_incidents(ctx: CheckContext) -> Finding:
    """Open incidents of every component but the doctor's own (those mirror the checks)."""
    counts = dict(
        Incident.objects.filter(resolved_at__isnull=True)
        .exclude(component="doctor")
        .values_list("severity")
        .annotate(n=Count("id"))
        .values_list("severity", "n")
    )
    critical = counts.get(Incident.Severity.CRITICAL, 0)
    warning = counts.get(Incident.Severity.WARNING, 0)
    if critical:
        newest = (
            Incident.objects.filter(resolved_at__isnull=True, severity=Incident.Severity.CRITICAL)
            .exclude(component="doctor")
            .order_by("-opened_at")
            .first()
        )
        label = f"; newest {newest.component}/{newest.code}" if newest else ""
        return fail(f"{critical} critical, {warning} warning open{label}")
    if warning:
        return warn(f"{warning} warning open", 0.8)
    return ok("none open")


def check_market_data(ctx: CheckContext) -> Finding:
    from routing.executor import BAR_INTERVAL
    from routing.models import MarketBar

    newest = dict(
        MarketBar.objects.filter(symbol__in=settings.SYMBOLS, interval=BAR_INTERVAL)
        .values("symbol")
        .annotate(newest=Max("close_time"))
        .values_list("symbol", "newest")
    )
    ages = {symbol: _age_seconds(newest.get(symbol), ctx.now) for symbol in settings.SYMBOLS}
    missing = [symbol for symbol, age in ages.items() if age is None]
    if missing:
        return fail(f"no bars for {', '.join(missing)}")
    oldest_symbol = max(ages, key=lambda s: ages[s] or 0.0)
    oldest = ages[oldest_symbol] or 0.0
    detail = f"newest bars: oldest is {oldest_symbol}'s, closed {_age_text(oldest)} ago"
    if oldest > BAR_FAIL_SECONDS:
        return fail(detail)
    if oldest > BAR_WARN_SECONDS:
        return warn(detail, _graded_age(oldest, good=BAR_WARN_SECONDS, bad=BAR_FAIL_SECONDS))
    return ok(detail)


def check_model(ctx: CheckContext) -> Finding:
    """The active model's age and the drift of its live features from its training data."""
    from mlinsights.models import InsightCache, ModelVersion

    active = ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).first()
    if active is None:
        # ML is optional: without an active model the ML source simply does not trade.
        shadows = list(
            ModelVersion.objects.filter(state=ModelVersion.State.SHADOW).values_list(
                "version", flat=True
            )
        )
        if shadows:
            listed = ", ".join(f"v{v}" for v in shadows)
            return ok(f"no active model yet ({listed} in shadow): the ML signal is off")
        return ok("no model trained: the ML signal is off (train_model to start one)")
    age = ctx.now - active.created_at
    parts = [f"v{active.version} trained {_age_text(age.total_seconds())} ago"]
    cache = InsightCache.objects.filter(model_version=active).first()
    drift: dict[str, Any] = (cache.data.get("drift") if cache else None) or {}
    significant = sorted(n for n, d in drift.items() if d.get("level") == "significant")
    if significant:
        parts.append(f"significant drift in {', '.join(significant)}")
    detail = "; ".join(parts)
    if age > MODEL_WARN_AGE or significant:
        return warn(detail + ": retrain", 0.7)
    return ok(detail)


def check_firestore(ctx: CheckContext) -> Finding:
    """The mirror as the system runs it: this process's settings say whether it is configured
    here, the drain's own record whether the workers are sending (``make run`` configures
    the emulator for its processes only, not for a ``doctor`` started by hand)."""
    from tradingsite.firestore import outbox_status

    status = outbox_status(now=ctx.now)
    lag = status.oldest_unsent_age_seconds
    backlog = f"{status.backlog} waiting" + (f", oldest {_age_text(lag)}" if lag else "")
    if status.parked:
        return fail(
            f"{status.parked} outbox rows parked ({status.last_error or 'see admin'}); {backlog}"
        )
    drained = _age_seconds(status.last_success_at, ctx.now)
    tried = _age_seconds(status.last_failure_at, ctx.now)
    if not status.enabled:
        # Not configured in this process; are the workers draining (or trying to)?
        draining = drained is not None and drained <= OUTBOX_DRAINED_RECENTLY_SECONDS
        trying = tried is not None and tried <= OUTBOX_TRIED_RECENTLY_SECONDS
        if not (draining or trying):
            return warn(f"mirror off: {status.disabled_reason}; {backlog}", 0.9)
        if draining and drained is not None:
            backlog += f"; the workers drained it {_age_text(drained)} ago"
    if lag is not None and lag > OUTBOX_LAG_FAIL_SECONDS:
        return fail(f"{backlog}; last error: {status.last_error or 'none'}")
    if lag is not None and lag > OUTBOX_LAG_WARN_SECONDS:
        confidence = _graded_age(lag, good=OUTBOX_LAG_WARN_SECONDS, bad=OUTBOX_LAG_FAIL_SECONDS)
        return warn(f"{backlog}; last error: {status.last_error or 'none'}", confidence)
    return ok(f"in sync ({backlog})")


def check_risk_state(ctx: CheckContext) -> Finding:
    """The state row is sealed, its effective limits are what the limits say, halts explained."""
    from risk.limits import limits_as_dict
    from risk.models import RiskState
    from risk.selectors import limits_effective, row_checksum_ok

    row = RiskState.objects.first()
    if row is None:
        return fail("no risk state: the executor creates it on its first tick")
    if not row_checksum_ok(row):
        return fail(f"risk state v{row.version} fails its checksum: restore a snapshot")
    # The kill switch is read live by the pre-trade checks; its copy in the row only follows
    # the next state change, so it is no sign of inconsistency.
    expected = limits_as_dict(limits_effective(multiplier=row.size_multiplier))
    stored = dict(row.effective_limits)
    for flag in ("kill_switch",):
        expected.pop(flag, None)
        stored.pop(flag, None)
    if stored != expected:
        return warn("effective limits differ from the configured ones times the multiplier", 0.5)
    if row.halted:
        return warn(f"trading halted: {row.halt_reason}", 0.5)
    return ok(f"v{row.version}, size multiplier {row.size_multiplier}")


def check_alerts(ctx: CheckContext) -> Finding:
    from doctor.alerts import alerts_status

    status = alerts_status(now=ctx.now)
    if not status.channels:
        # Nobody hears about an incident: worth a warning where real money trades.
        if settings.ENV in {"staging", "prod"}:
            return warn("no alert channel configured (ALERT_* settings)", 0.9)
        return ok(f"no alert channel configured (ENV={settings.ENV}); incidents are recorded")
    channels = ", ".join(status.channels)
    if status.failed_recently:
        return fail(
            f"{status.failed_recently} alert(s) could not be delivered in 24 h "
            f"({status.last_error or 'see admin'}); channels: {channels}"
        )
    if status.pending_stuck:
        return warn(f"{status.pending_stuck} alert(s) waiting too long; channels: {channels}")
    return ok(f"channels: {channels}")


CHECKS: tuple[Check, ...] = (
    Check("database", "Database", check_database, weight=3, critical=True),
    Check("redis", "Redis", check_redis, weight=3, critical=True),
    Check("workers", "Celery workers", check_workers, weight=2, critical=True),
    Check("queues", "Queue depth", check_queues),
    Check("beat", "Beat", check_beat, weight=2),
    Check("executor", "Executor heartbeat", check_executor, weight=3, critical=True),
    Check("venue", "Venue and clock", check_venue, weight=2),
    Check("weight", "Request weight", check_weight),
    Check("reconciliation", "Reconciliation", check_reconciliation, weight=2, opens_incident=False),
    Check("incidents", "Open incidents", check_incidents, opens_incident=False),
    Check("market_data", "Market data", check_market_data, weight=2),
    Check("model", "Model", check_model, weight=0.5),
    Check("firestore", "Firestore mirror", check_firestore, weight=0.5),
    Check("risk_state", "Risk state", check_risk_state, weight=3, critical=True),
    Check("withdrawals", "API key withdrawals", check_withdrawals),
    Check("alerts", "Alerts", check_alerts, weight=0.5),
)
CHECK_NAMES = tuple(check.name for check in CHECKS)


def _run_one(check: Check, ctx: CheckContext) -> CheckResult:
    started = time.perf_counter()
    try:
        finding = check.run(ctx)
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: stop, rather than store a snapshot of half the checks
    except Exception as error:  # a check that cannot run is a failed check, with the reason
        finding = fail(f"{type(error).__name__}: {error}"[:500])
    latency = round((time.perf_counter() - started) * 1000, 1)
    confidence = finding.confidence if math.isfinite(finding.confidence) else 0.0
    return CheckResult(
        name=check.name,
        label=check.label,
        status=finding.status,
        detail=finding.detail,
        latency_ms=latency,
        confidence=min(1.0, max(0.0, confidence)),
        critical=check.critical,
        weight=check.weight,
        opens_incident=check.opens_incident,
    )


def checks_run(
    *, now: datetime | None = None, checks: tuple[Check, ...] | None = None
) -> list[CheckResult]:
    ctx = CheckContext(now=now or timezone.now())
    return [_run_one(check, ctx) for check in (CHECKS if checks is None else checks)]


def confidence_overall(results: Iterable[CheckResult]) -> float:
    """min(weighted mean of confidences, lowest critical confidence); 0 with no checks."""
    results = list(results)
    total = sum(result.weight for result in results)
    if not results or total <= 0:
        return 0.0
    mean = sum(result.weight * result.confidence for result in results) / total
    critical = [result.confidence for result in results if result.critical]
    return round(min([mean, *critical]), 4)


def status_overall(results: Iterable[CheckResult]) -> str:
    return max((result.status for result in results), key=STATUS_RANK.__getitem__, default=OK)
