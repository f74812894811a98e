"""Prometheus metrics for ``/metrics``, computed when Prometheus scrapes.

The web process neither ticks, routes nor drains the outbox, so counters kept in its memory
would see nothing: every value is read at scrape time from the state all processes share (the
database and Redis), by one custom collector on a private registry (nothing of the library's
process-wide default registry leaks in). Every query is an aggregate over an index.

- ``tradingsite_executor_tick_duration_seconds``, ``..._last_tick_timestamp_seconds`` (gauges):
  the newest live executor heartbeat, which carries the tick's ``TickReport``.
- ``tradingsite_orders{symbol,status}`` (gauge): ``Order`` rows.
- ``tradingsite_rejects_total{stage,reason}`` (counter): rejected ``Signal`` rows by
  ``risk_code`` (``pretrade``) and rejected ``Order`` rows by venue cause (``venue``).
- ``tradingsite_venue_errors_total{code}`` (counter): a Redis hash (``venue_error_record``).
- ``tradingsite_venue_request_weight_used{budget}``, ``..._limit{budget}`` (gauges): the
  ``WeightBudget`` count of the current minute, and the venue's limit.
- ``tradingsite_outbox_backlog`` / ``_parked`` / ``_lag_seconds`` (gauges): the Firestore
  outbox as ``tradingsite.firestore.outbox_status`` reads it.
- ``tradingsite_doctor_confidence``, ``tradingsite_doctor_snapshot_timestamp_seconds``
  (gauges): the newest ``DoctorSnapshot``.
- ``tradingsite_websocket_clients`` (gauge): a Redis sorted set of open dashboard sockets.

Rejected signals and orders are never deleted and never leave their final status, so their
counts only grow: counters. A metric with nothing to report yet (no tick, no doctor run) has
no sample rather than a made-up zero.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from binance.exceptions import BinanceAPIException
from django.conf import settings
from django.db.models import Count
from django.db.models.functions import Left
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis import RedisError

from doctor.models import DoctorSnapshot, Heartbeat
from routing.models import Order, Signal
from routing.weights import WeightBudget
from tradingsite.firestore import outbox_status
from tradingsite.redisconn import redis_client, redis_key

logger = logging.getLogger(__name__)

WEIGHT_BUDGET = "binance-futures"  # the name routing.runtime's WeightBudget uses (the default)

# A connected dashboard refreshes its entry this often; an entry older than the age limit
# belongs to a web process that died without saying goodbye and is no longer counted.
WEBSOCKET_SEEN_INTERVAL_SECONDS = 30.0
WEBSOCKET_MAX_AGE_SECONDS = 3 * WEBSOCKET_SEEN_INTERVAL_SECONDS


# --- reading the shared state ----------------------------------------------------------------


@dataclass(frozen=True)
class TickSeen:
    duration_seconds: float
    at: datetime


def executor_last_tick() -> TickSeen | None:
    """The newest live executor tick's duration, from the heartbeat it records as it ends."""
    row = (
        Heartbeat.objects.filter(component="executor", metrics__run="live")
        .order_by("-created_at", "-id")
        .values_list("metrics", "created_at")
        .first()
    )
    if row is None:
        return None
    metrics, at = row
    duration_ms = metrics.get("duration_ms") if isinstance(metrics, dict) else None
    if not isinstance(duration_ms, int | float):
        return None
    return TickSeen(duration_seconds=float(duration_ms) / 1000, at=at)


def orders_by_status() -> dict[tuple[str, str], int]:
    """Orders per (symbol, status): every status of every traded symbol, zeros included."""
    counts = {(symbol, status): 0 for symbol in settings.SYMBOLS for status in Order.Status.values}
    rows = Order.objects.values_list("symbol", "status").annotate(n=Count("id")).order_by()
    for symbol, status, n in rows:
        counts[(symbol, status)] = n
    return counts


# ``str()`` of the resilience layer's exceptions, as routing.orders stores them in last_error.
_VENUE_REJECTION = re.compile(r"rejected by the venue \(code (-?\d+|None)\)")
_ORDER_REJECT_PREFIXES = (
    ("IP banned by the venue", "banned"),
    ("gave up after", "retries_exhausted"),
    ("not placed after", "not_placed"),
)
# Long enough for every prefix above and a venue code; short enough that the grouping below
# yields a handful of rows however many orders were rejected.
_REASON_HEAD = 48


def order_reject_reason(last_error: str) -> str:
    """Why the venue side refused an order, from its ``last_error``: the venue's error code
    (e.g. ``-2019``), ``banned``, ``retries_exhausted``, ``not_placed``, ``venue_status`` (the
    venue reported the order REJECTED) or ``other``."""
    match = _VENUE_REJECTION.match(last_error)
    if match:
        return "no_code" if match.group(1) == "None" else match.group(1)
    for prefix, reason in _ORDER_REJECT_PREFIXES:
        if last_error.startswith(prefix):
            return reason
    return "venue_status" if not last_error else "other"


def rejects_by_reason() -> dict[tuple[str, str], int]:
    """Rejections per (stage, reason). ``pretrade``: signals refused before any order (risk
    checks, exchange filters, halted symbol, no sizing data), by their ``risk_code`` as stored
    (several failed checks are one comma-joined reason). ``venue``: orders the venue side
    refused, by ``order_reject_reason``."""
    counts: dict[tuple[str, str], int] = {}
    signals = (
        Signal.objects.filter(status=Signal.Status.REJECTED)
        .values_list("risk_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    for code, n in signals:
        counts[("pretrade", code or "unspecified")] = n
    orders = (
        Order.objects.filter(status=Order.Status.REJECTED)
        .annotate(head=Left("last_error", _REASON_HEAD))
        .values_list("head")
        .annotate(n=Count("id"))
        .order_by()
    )
    for head, n in orders:
        key = ("venue", order_reject_reason(head))
        counts[key] = counts.get(key, 0) + n
    return counts


def _venue_errors_key() -> str:
    return redis_key("metrics", "venue_errors")


def venue_error_code(error: BaseException) -> str:
    """The label a failed venue call is counted under: ``http_418`` / ``http_429`` first (their
    bodies carry -1003 too), then Binance's error code (``-1021``), then the HTTP status
    (``http_503``); for failures with no answer, the exception's name (``ReadTimeout``)."""
    if isinstance(error, BinanceAPIException):
        status = getattr(error, "status_code", None)
        code = getattr(error, "code", None)
        if status in (418, 429):
            return f"http_{status}"
        if code not in (None, 0, "0", ""):
            return str(code)
        return f"http_{status}"
    return type(error).__name__


def venue_error_record(error: BaseException) -> None:
    """Count one failed venue call (retried or not) under ``venue_error_code``.

    A Redis hash, because the workers that call the venue are not the process Prometheus
    scrapes. Never raises: losing a count must not change how the call's failure is handled.
    """
    try:
        redis_client().hincrby(_venue_errors_key(), venue_error_code(error), 1)
    except RedisError:
        logger.warning("venue error not counted: Redis is unavailable", exc_info=True)


def venue_errors_by_code() -> dict[str, int]:
    raw = redis_client().hgetall(_venue_errors_key())
    return {
        key.decode() if isinstance(key, bytes) else key: int(value) for key, value in raw.items()
    }


@dataclass(frozen=True)
class WeightSeen:
    used: int
    limit_per_minute: int


def request_weight(*, now_ms: int) -> WeightSeen:
    """Request weight counted so far in this minute against the venue's per-IP budget."""
    # Imported on use: the venue modules it pulls in may record their errors here.
    from routing.runtime import BINANCE_WEIGHT_PER_MINUTE

    budget = WeightBudget(BINANCE_WEIGHT_PER_MINUTE, name=WEIGHT_BUDGET)
    return WeightSeen(used=budget.used(now_ms=now_ms), limit_per_minute=BINANCE_WEIGHT_PER_MINUTE)


def outbox_counts() -> tuple[int, int, float | None]:
    """(waiting, parked, age of the oldest waiting row in seconds) as the doctor reads them."""
    status = outbox_status()
    return status.backlog, status.parked, status.oldest_unsent_age_seconds


@dataclass(frozen=True)
class DoctorSeen:
    confidence: float
    taken_at: datetime


def doctor_latest() -> DoctorSeen | None:
    row = (
        DoctorSnapshot.objects.order_by("-taken_at", "-id")
        .values_list("confidence", "taken_at")
        .first()
    )
    return DoctorSeen(confidence=row[0], taken_at=row[1]) if row is not None else None


# --- open dashboard websockets ---------------------------------------------------------------
# One sorted set for all web processes: member = the consumer's channel name, score = when it
# was last known to be open (Unix seconds). A process that crashes never removes its members;
# they age out instead.


def _websocket_clients_key() -> str:
    return redis_key("metrics", "websocket_clients")


def websocket_client_seen(*, connection_id: str, at: float | None = None) -> None:
    """Count ``connection_id`` as open (on connect, then every seen interval)."""
    seen = time.time() if at is None else at
    redis_client().zadd(_websocket_clients_key(), {connection_id: seen})


def websocket_client_gone(*, connection_id: str) -> None:
    redis_client().zrem(_websocket_clients_key(), connection_id)


def websocket_clients_count(*, at: float | None = None) -> int:
    """Open dashboard websockets across web processes; forgets those not seen for too long."""
    now = time.time() if at is None else at
    key = _websocket_clients_key()
    pipe = redis_client().pipeline()
    pipe.zremrangebyscore(key, "-inf", f"({now - WEBSOCKET_MAX_AGE_SECONDS}")
    pipe.zcard(key)
    _, count = pipe.execute()
    return int(count)


# --- exposition ------------------------------------------------------------------------------


class TradingsiteCollector:
    """Reads every metric afresh on each ``collect`` (one scrape)."""

    def __init__(self, *, now: float | None = None) -> None:
        self._now = now

    def collect(self) -> Iterator[Metric]:
        now = time.time() if self._now is None else self._now

        duration = GaugeMetricFamily(
            "tradingsite_executor_tick_duration_seconds",
            "Wall time of the newest live executor tick.",
        )
        last_tick = GaugeMetricFamily(
            "tradingsite_executor_last_tick_timestamp_seconds",
            "When the newest live executor tick ended (Unix time).",
        )
        tick = executor_last_tick()
        if tick is not None:
            duration.add_metric([], tick.duration_seconds)
            last_tick.add_metric([], tick.at.timestamp())
        yield duration
        yield last_tick

        orders = GaugeMetricFamily(
            "tradingsite_orders",
            "Orders now in each status, per symbol.",
            labels=["symbol", "status"],
        )
        for (symbol, status), n in sorted(orders_by_status().items()):
            orders.add_metric([symbol, status], n)
        yield orders

        rejects = CounterMetricFamily(
            "tradingsite_rejects",
            "Rejections: stage=pretrade counts signals refused before any order by their risk "
            "code; stage=venue counts orders refused by the venue, by its error code or cause.",
            labels=["stage", "reason"],
        )
        for (stage, reason), n in sorted(rejects_by_reason().items()):
            rejects.add_metric([stage, reason], n)
        yield rejects

        errors = CounterMetricFamily(
            "tradingsite_venue_errors",
            "Failed venue calls (each attempt, retried or not), by Binance error code, "
            "HTTP status (http_<status>) or exception name.",
            labels=["code"],
        )
        for code, n in sorted(venue_errors_by_code().items()):
            errors.add_metric([code], n)
        yield errors

        weight = request_weight(now_ms=int(now * 1000))
        used = GaugeMetricFamily(
            "tradingsite_venue_request_weight_used",
            "Request weight counted in the current minute against the venue's per-IP limit.",
            labels=["budget"],
        )
        used.add_metric([WEIGHT_BUDGET], weight.used)
        yield used
        limit = GaugeMetricFamily(
            "tradingsite_venue_request_weight_limit",
            "The venue's request-weight limit per minute and IP.",
            labels=["budget"],
        )
        limit.add_metric([WEIGHT_BUDGET], weight.limit_per_minute)
        yield limit

        waiting, parked, lag = outbox_counts()
        yield GaugeMetricFamily(
            "tradingsite_outbox_backlog",
            "Outbox entries waiting to be mirrored to Firestore (parked ones not counted).",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "tradingsite_outbox_parked",
            "Outbox entries Firestore refused, parked until an operator re-queues them.",
            value=parked,
        )
        if lag is not None:
            yield GaugeMetricFamily(
                "tradingsite_outbox_lag_seconds",
                "Age of the oldest outbox entry still waiting (the mirror's lag).",
                value=lag,
            )

        confidence = GaugeMetricFamily(
            "tradingsite_doctor_confidence", "Overall confidence of the newest doctor run, 0-1."
        )
        taken = GaugeMetricFamily(
            "tradingsite_doctor_snapshot_timestamp_seconds",
            "When the newest doctor run was taken (Unix time).",
        )
        doctor = doctor_latest()
        if doctor is not None:
            confidence.add_metric([], doctor.confidence)
            taken.add_metric([], doctor.taken_at.timestamp())
        yield confidence
        yield taken

        yield GaugeMetricFamily(
            "tradingsite_websocket_clients",
            "Dashboard websockets open across all web processes.",
            value=websocket_clients_count(at=now),
        )


def metrics_exposition(*, now: float | None = None) -> bytes:
    """The Prometheus text exposition of every metric, read now."""
    registry = CollectorRegistry()
    registry.register(TradingsiteCollector(now=now))
    return generate_latest(registry)


def metrics_token_valid(*, authorization: str, token: str) -> bool:
    """``Authorization: Bearer <token>`` (scheme case-insensitive), compared in constant time."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        # Off rather than open: the metrics tell an outsider what the account is doing.
        return HttpResponseNotFound(
            "/metrics is off: set METRICS_TOKEN to turn it on.\n", content_type="text/plain"
        )
    if not metrics_token_valid(authorization=request.headers.get("Authorization", ""), token=token):
        response = HttpResponse(
            "/metrics needs Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
