"""Alerts: one message per incident opening and one per recovery, to every configured channel.

An incident's opening (and later its recovery) records one PENDING ``Alert`` per configured
channel inside the incident's own transaction; only after that transaction commits is
``doctor.tasks.alert_send_task`` queued for each, so a rolled-back incident alerts no one and
no HTTP call ever runs inside a database transaction of the caller. More occurrences of an
incident that is already open alert no one: ``incident_open`` only calls ``alerts_queue`` when
it creates the incident.

Delivery (``alert_deliver``) is at least once: the alert's row is locked around the HTTP call,
so two workers never send it together and one that is already SENT is never sent again; a
process that dies after the receiver answered but before the commit sends it once more (the
webhook payload carries ``alert_id`` for receivers that deduplicate). Retryable failures
(network errors, HTTP 5xx, 408, 425, 429) are retried by the task with exponential back-off -
or after ``Retry-After`` - until ``ALERT_MAX_ATTEMPTS`` HTTP attempts, then the alert is
FAILED with its error, which the doctor shows. Other answers (3xx, 4xx) fail at once: a wrong
URL, token or chat id does not fix itself.

Each channel sends at most ``ALERT_RATE_PER_MINUTE`` alerts a minute (a Redis counter per
channel and minute); an alert over the limit is delayed to a later minute, never dropped.

Webhook URLs and the bot token are secrets: they are never logged, and errors are stored and
logged with them redacted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from doctor.models import Alert, Incident
from tradingsite.redisconn import redis_client, redis_key

logger = logging.getLogger(__name__)

ALERT_MAX_ATTEMPTS = 6  # HTTP attempts per alert before it is FAILED
ALERT_MAX_DELAYS = 120  # rate-limit delays (about a minute each) before the task gives up
ALERT_BACKOFF_BASE_SECONDS = 10.0  # then 20, 40, 80, 160 s (each with up to -50 % jitter)
ALERT_BACKOFF_MAX_SECONDS = 600.0
ALERT_RETRY_AFTER_MAX_SECONDS = 3600.0  # a longer Retry-After is waited for this long only
ALERT_RATE_PER_MINUTE = 20  # per channel; Telegram allows about 20 a minute in one group chat
ALERT_HTTP_TIMEOUT = (5.0, 10.0)  # seconds to connect, seconds to read the answer
ALERT_PENDING_STALE_AFTER = timedelta(minutes=5)
# A pending alert whose task was due this long ago is queued again by the sweep (the longest
# legitimate wait is a back-off or a Retry-After, after which next_attempt_at is renewed).
ALERT_OVERDUE_AFTER = timedelta(minutes=2)
ALERT_SWEEP_BATCH = 200
# While one worker sends an alert no other may: a lease longer than the HTTP timeouts.
ALERT_CLAIM_SECONDS = 120
# The cron watchdog leaves an alert alone until a second before its next attempt is due.
ALERT_DUE_TOLERANCE = timedelta(seconds=2)
ALERT_SENT_MARKER_SECONDS = 24 * 3600
ALERT_TEXT_LIMIT = 3500  # characters; a Telegram message holds 4096
ALERT_ERROR_LIMIT = 500  # characters of an error or answer body kept in ``last_error``

RETRYABLE_STATUSES = frozenset({408, 425, 429})
REDACTED = "<redacted>"

Backoff = Callable[[int], float]


# --- channels and texts ----------------------------------------------------------------------


def alerts_channels() -> tuple[Alert.Channel, ...]:
    """The channels configured in the settings, in a fixed order."""
    channels: list[Alert.Channel] = []
    if settings.ALERT_WEBHOOK_URL:
        channels.append(Alert.Channel.WEBHOOK)
    if settings.ALERT_SLACK_WEBHOOK_URL:
        channels.append(Alert.Channel.SLACK)
    if settings.ALERT_TELEGRAM_BOT_TOKEN and settings.ALERT_TELEGRAM_CHAT_ID:
        channels.append(Alert.Channel.TELEGRAM)
    return tuple(channels)


def duration_text(seconds: float) -> str:
    """45s, 12m 05s, 3h 02m, 2d 04h: how long an incident lasted, to the unit that matters."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def alert_text(
    *,
    event: Alert.Event,
    severity: str,
    component: str,
    code: str,
    message: str,
    opened_at: datetime,
    resolved_at: datetime | None = None,
    occurrences: int = 1,
    env: str = "",
) -> str:
    """The message every channel shows: what, how bad, since when (and for a recovery, how long
    it lasted). A pure function of its arguments."""
    where = f"[{env}] " if env else ""
    if len(message) > ALERT_TEXT_LIMIT:
        message = message[: ALERT_TEXT_LIMIT - 1] + "…"
    if event == Alert.Event.OPENED:
        return f"{where}{severity.upper()} {component}/{code}: {message}\nsince {_when(opened_at)}"
    ended = resolved_at or opened_at
    seen = f", seen {occurrences} times" if occurrences > 1 else ""
    return (
        f"{where}RECOVERED {component}/{code}: {message}\n"
        f"lasted {duration_text((ended - opened_at).total_seconds())}{seen} "
        f"(from {_when(opened_at)} to {_when(ended)})"
    )


def alert_text_for(incident: Incident, event: Alert.Event) -> str:
    return alert_text(
        event=event,
        severity=incident.severity,
        component=incident.component,
        code=incident.code,
        message=incident.message,
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at,
        occurrences=incident.occurrences,
        env=settings.ENV,
    )


# --- queueing --------------------------------------------------------------------------------


def alerts_queue(incident: Incident, event: Alert.Event) -> list[Alert]:
    """Inside the incident's transaction: record one pending alert per configured channel and
    queue their delivery for after the commit.

    ``info`` incidents (a repair already done) alert no one. A recovery goes to the channels
    that were told about the opening (and are still configured)."""
    configured = alerts_channels()
    if not configured:
        return []
    if event == Alert.Event.OPENED:
        if incident.severity == Incident.Severity.INFO:
            return []
        channels = configured
    else:
        told = set(
            Alert.objects.filter(incident=incident, event=Alert.Event.OPENED).values_list(
                "channel", flat=True
            )
        )
        channels = tuple(channel for channel in configured if channel in told)
    if not channels:
        return []
    text = alert_text_for(incident, event)
    now = timezone.now()
    alerts = [
        Alert.objects.create(
            incident=incident,
            event=event,
            channel=channel,
            text=text,
            created_at=now,
            next_attempt_at=now,
        )
        for channel in channels
    ]
    transaction.on_commit(partial(alerts_dispatch, [alert.pk for alert in alerts]))
    return alerts


def alerts_dispatch(alert_ids: list[int]) -> None:
    """Queue the delivery task of each alert (called once their rows are committed), as the
    chain that owns it now (``Alert.dispatch``)."""
    from doctor.tasks import alert_send_task  # imported here: doctor.tasks imports this module

    chains = dict(Alert.objects.filter(pk__in=alert_ids).values_list("pk", "dispatch"))
    for alert_id in alert_ids:
        try:
            alert_send_task.delay(alert_id, chains.get(alert_id, 0))
        except Exception:
            # Raised after the caller's commit, so it must not escape into (say) the executor
            # tick that halted trading; the alert stays PENDING and the doctor reports it.
            logger.exception("alert %s could not be queued; it stays pending", alert_id)


def alerts_resend(*, alert_ids: Iterable[int], now: datetime | None = None) -> int:
    """Send failed alerts again, each with a fresh set of attempts, and pending ones whose
    task is long overdue (lost with a broker outage or a killed worker); returns how many."""
    moment = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Alert.objects.select_for_update()
            .filter(pk__in=list(alert_ids))
            .filter(_resendable(moment))
            .values_list("pk", flat=True)
        )
        Alert.objects.filter(pk__in=ids).update(
            status=Alert.Status.PENDING,
            attempts=0,
            next_attempt_at=moment,
            dispatch=F("dispatch") + 1,
        )
        if ids:
            transaction.on_commit(partial(alerts_dispatch, ids))
    return len(ids)


def _resendable(now: datetime) -> Q:
    return Q(status=Alert.Status.FAILED) | _overdue(now)


def _overdue(now: datetime) -> Q:
    """Pending, and its task should have run ``ALERT_OVERDUE_AFTER`` ago: nothing is coming."""
    return Q(status=Alert.Status.PENDING) & (
        Q(next_attempt_at__lt=now - ALERT_OVERDUE_AFTER) | Q(next_attempt_at__isnull=True)
    )


def alerts_deliver_due(*, now: datetime | None = None) -> dict[str, int]:
    """Try every pending alert that is due once, here and now (``cron_doctor_cache``, run by
    the system's cron: it must reach people when the workers that send alerts are the part
    that died). The claim lease keeps a worker sending the same alert from sending it twice.
    Returns the count per outcome."""
    moment = now or timezone.now()
    due = list(
        Alert.objects.filter(status=Alert.Status.PENDING)
        .filter(Q(next_attempt_at__lte=moment) | Q(next_attempt_at__isnull=True))
        .order_by("id")
        .values_list("pk", flat=True)[:ALERT_SWEEP_BATCH]
    )
    outcomes: dict[str, int] = {}
    for alert_id in due:
        try:
            # Each on its own clock (a slow receiver makes the loop long) and, since this
            # process may lack a channel's settings, one not configured here is left alone.
            outcome = alert_deliver(
                alert_id,
                now=None if now is None else moment,
                only_if_due=True,
                unconfigured_fails=False,
            ).outcome.value
        except Exception:  # one bad alert must not keep the others from going out
            logger.exception("alert %s could not be delivered from here", alert_id)
            outcome = "error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def alerts_sweep(*, now: datetime | None = None) -> int:
    """Queue again every pending alert whose task is overdue (the periodic safety net: a task
    lost between the commit and the broker, or killed mid-send, must not lose a halt alert).
    Its attempts are kept; a second task for an alert still being sent only finds it claimed."""
    moment = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Alert.objects.select_for_update(skip_locked=True)
            .filter(_overdue(moment))
            .values_list("pk", flat=True)[:ALERT_SWEEP_BATCH]
        )
        Alert.objects.filter(pk__in=ids).update(next_attempt_at=moment, dispatch=F("dispatch") + 1)
        if ids:
            logger.warning("alerts %s were overdue: queued again", ids)
            transaction.on_commit(partial(alerts_dispatch, ids))
    return len(ids)


# --- delivery --------------------------------------------------------------------------------


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # for good: recorded on the alert
    RETRY = "retry"  # a retryable failure: try again after ``retry_in``
    DELAYED = "delayed"  # over the channel's rate limit: try again after ``retry_in``
    SKIPPED = "skipped"  # not pending (already sent or failed) or gone


@dataclass(frozen=True)
class Delivery:
    outcome: DeliveryOutcome
    retry_in: float | None = None
    error: str = ""


@dataclass(frozen=True)
class _Request:
    url: str
    body: dict[str, Any]


def alert_backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt: exponential, capped, with
    jitter so alerts that failed together do not all come back together."""
    ceiling = min(
        ALERT_BACKOFF_MAX_SECONDS, ALERT_BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempt - 1)
    )
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def _secrets() -> list[str]:
    """The strings never to log or store: the bot token and the webhook URLs (and their paths,
    which is where Slack and most webhooks keep the secret)."""
    found: list[str] = []
    if settings.ALERT_TELEGRAM_BOT_TOKEN:
        found.append(settings.ALERT_TELEGRAM_BOT_TOKEN)
    for url in (settings.ALERT_WEBHOOK_URL, settings.ALERT_SLACK_WEBHOOK_URL):
        if url:
            parts = urlsplit(url)
            found.append(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(path) >= 6:  # a bare "/" or "/hook" hides nothing and would garble the text
                found.append(path)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, REDACTED)
    return text


def _slack_escape(text: str) -> str:
    # Slack's message formatting treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_request(alert: Alert) -> _Request | None:
    """The URL and JSON body for ``alert``'s channel; None when it is no longer configured."""
    incident = alert.incident
    if alert.channel == Alert.Channel.WEBHOOK and settings.ALERT_WEBHOOK_URL:
        return _Request(
            settings.ALERT_WEBHOOK_URL,
            {
                "alert_id": alert.pk,
                "event": alert.event,
                "severity": incident.severity,
                "component": incident.component,
                "code": incident.code,
                "message": incident.message,
                "incident_id": incident.pk,
                "occurrences": incident.occurrences,
                "opened_at": incident.opened_at.isoformat(),
                "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
                "env": settings.ENV,
                "text": alert.text,
            },
        )
    if alert.channel == Alert.Channel.SLACK and settings.ALERT_SLACK_WEBHOOK_URL:
        return _Request(settings.ALERT_SLACK_WEBHOOK_URL, {"text": _slack_escape(alert.text)})
    if (
        alert.channel == Alert.Channel.TELEGRAM
        and settings.ALERT_TELEGRAM_BOT_TOKEN
        and settings.ALERT_TELEGRAM_CHAT_ID
    ):
        base = settings.ALERT_TELEGRAM_API_URL.rstrip("/")
        return _Request(
            f"{base}/bot{settings.ALERT_TELEGRAM_BOT_TOKEN}/sendMessage",
            {
                "chat_id": settings.ALERT_TELEGRAM_CHAT_ID,
                "text": alert.text,
                "disable_web_page_preview": True,
            },
        )
    return None


def _retry_after(response: requests.Response, *, now: datetime) -> float | None:
    """Seconds the receiver asked us to wait: the ``Retry-After`` header (seconds or an HTTP
    date), or Telegram's ``parameters.retry_after`` in the body."""
    header = str(response.headers.get("Retry-After", "")).strip()
    if header:
        if header.isdigit():
            return float(header)
        try:
            return max(0.0, (parsedate_to_datetime(header) - now).total_seconds())
        except (TypeError, ValueError):
            pass
    try:
        body = response.json()
    except ValueError:
        return None
    parameters = body.get("parameters") if isinstance(body, dict) else None
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _rate_limit_wait(channel: str, *, now: datetime, per_minute: int) -> float:
    """0 when ``channel`` may send now (a token is taken), else the seconds until the next
    minute with room. A Redis failure lets the alert through: it matters more than the limit."""
    window = math.floor(now.timestamp() / 60)
    key = redis_key("alerts", "rate", channel, str(window))
    try:
        pipeline = redis_client().pipeline()
        pipeline.incr(key)
        pipeline.expire(key, 120)
        count = int(pipeline.execute()[0])
    except redis.RedisError as error:
        logger.warning("alert rate limit not checked (Redis: %s); sending anyway", error)
        return 0.0
    if count <= per_minute:
        return 0.0
    # Spread the delayed ones over the next minute's first seconds instead of one instant.
    return (window + 1) * 60 - now.timestamp() + random.uniform(0.0, 10.0)  # noqa: S311


def alert_deliver(
    alert_id: int,
    *,
    now: datetime | None = None,
    per_minute: int = ALERT_RATE_PER_MINUTE,
    max_attempts: int = ALERT_MAX_ATTEMPTS,
    backoff: Backoff = alert_backoff,
    dispatch: int | None = None,
    only_if_due: bool = False,
    unconfigured_fails: bool = True,
) -> Delivery:
    """Send one pending alert (one HTTP attempt) and record the result on it.

    In order: is it pending — and, for a task, does its chain still own the alert
    (``dispatch``: a sweep or resend started a newer chain) or, for the cron watchdog
    (``only_if_due``), is it due (not waiting out a worker's back-off); then the claim (a
    Redis lease: a second sender skips while the first is sending); then the channel's rate
    limit; then the attempt. The HTTP call runs outside any database transaction (on SQLite a
    transaction locks the whole database, and the executor must never wait on a slow
    receiver). ``unconfigured_fails=False`` (the cron watchdog) leaves an alert whose channel
    this process has no settings for to the workers.
    """
    moment = now or timezone.now()
    row = (
        Alert.objects.filter(pk=alert_id)
        .values_list("status", "channel", "next_attempt_at", "dispatch")
        .first()
    )
    if row is None or row[0] != Alert.Status.PENDING:
        return Delivery(DeliveryOutcome.SKIPPED)
    _status, channel, due_at, owner = row
    if dispatch is not None and dispatch != owner:
        return Delivery(DeliveryOutcome.SKIPPED)  # a newer chain owns it
    if only_if_due and due_at is not None and due_at > moment + ALERT_DUE_TOLERANCE:
        return Delivery(DeliveryOutcome.SKIPPED)  # a worker's chain is waiting out a back-off
    with _claimed(alert_id) as claimed:
        if not claimed:
            return Delivery(DeliveryOutcome.SKIPPED)
        if not unconfigured_fails and channel not in alerts_channels():
            return Delivery(DeliveryOutcome.SKIPPED)
        wait = _rate_limit_wait(channel, now=moment, per_minute=per_minute)
        if wait > 0:
            logger.info("alert %s to %s delayed %.0f s by the rate limit", alert_id, channel, wait)
            _due(alert_id, moment + timedelta(seconds=wait))
            return Delivery(DeliveryOutcome.DELAYED, retry_in=wait, error="rate limited")
        return _attempt(alert_id, moment=moment, max_attempts=max_attempts, backoff=backoff)


@contextlib.contextmanager
def _claimed(alert_id: int) -> Iterator[bool]:
    """A lease with its own token (a redis-py lock): released only by its holder, so a lease
    that expired mid-send can never free a second sender's."""
    try:
        lease = redis_client().lock(
            redis_key("alerts", "claim", str(alert_id)), timeout=ALERT_CLAIM_SECONDS
        )
        claimed = bool(lease.acquire(blocking=False))
    except redis.RedisError as error:
        # Sending twice beats not sending: without Redis, go ahead unclaimed.
        logger.warning("alert %s sent without a claim (Redis: %s)", alert_id, error)
        yield True
        return
    try:
        yield claimed
    finally:
        if claimed:
            with contextlib.suppress(redis.RedisError):
                lease.release()


def _sent_marker(alert_id: int) -> str:
    return redis_key("alerts", "sent", str(alert_id))


def _mark_delivered(alert_id: int) -> None:
    """Remember a 2xx before the database hears of it: if recording it fails (a time limit, a
    locked database) the next attempt records it instead of sending it again."""
    with contextlib.suppress(redis.RedisError):
        redis_client().set(_sent_marker(alert_id), "1", ex=ALERT_SENT_MARKER_SECONDS)


def _was_delivered(alert_id: int) -> bool:
    try:
        return bool(redis_client().exists(_sent_marker(alert_id)))
    except redis.RedisError:
        return False


def _due(alert_id: int, at: datetime) -> None:
    Alert.objects.filter(pk=alert_id, status=Alert.Status.PENDING).update(next_attempt_at=at)


def _attempt(alert_id: int, *, moment: datetime, max_attempts: int, backoff: Backoff) -> Delivery:
    alert = (
        Alert.objects.select_related("incident")
        .filter(pk=alert_id, status=Alert.Status.PENDING)
        .first()
    )
    if alert is None:
        return Delivery(DeliveryOutcome.SKIPPED)
    if _was_delivered(alert.pk):
        return _sent(alert, moment, note=" (recorded late: the receiver had answered)")
    request = alert_request(alert)
    if request is None:
        return _failed(alert, f"the {alert.channel} channel is no longer configured")
    alert.attempts += 1
    retry_after: float | None = None
    try:
        response = requests.post(
            request.url, json=request.body, timeout=ALERT_HTTP_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as error:
        problem = redact(f"{type(error).__name__}: {error}")[:ALERT_ERROR_LIMIT]
    else:
        if 200 <= response.status_code < 300:
            _mark_delivered(alert.pk)
            return _sent(alert, moment)
        body = response.text[:ALERT_ERROR_LIMIT].strip()
        problem = redact(f"HTTP {response.status_code}: {body}")[:ALERT_ERROR_LIMIT]
        code = response.status_code
        if code < 500 and code not in RETRYABLE_STATUSES:
            return _failed(alert, problem)
        retry_after = _retry_after(response, now=moment)
    if alert.attempts >= max_attempts:
        return _failed(alert, f"{problem} (gave up after {alert.attempts} attempts)")
    if retry_after is not None:
        retry_in = min(retry_after, ALERT_RETRY_AFTER_MAX_SECONDS)
    else:
        retry_in = backoff(alert.attempts)
    alert.last_error = problem
    alert.next_attempt_at = moment + timedelta(seconds=retry_in)
    alert.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    logger.warning(
        "alert %s to %s failed (attempt %d of %d), retrying in %.0f s: %s",
        alert.pk,
        alert.channel,
        alert.attempts,
        max_attempts,
        retry_in,
        problem,
    )
    return Delivery(DeliveryOutcome.RETRY, retry_in=retry_in, error=problem)


def _sent(alert: Alert, moment: datetime, *, note: str = "") -> Delivery:
    alert.status = Alert.Status.SENT
    alert.sent_at = moment
    alert.last_error = ""
    alert.save(update_fields=["status", "sent_at", "last_error", "attempts"])
    logger.info("alert %s (%s, %s) sent%s", alert.pk, alert.channel, alert.event, note)
    return Delivery(DeliveryOutcome.SENT)


def _failed(alert: Alert, error: str) -> Delivery:
    alert.status = Alert.Status.FAILED
    alert.last_error = error[: 2 * ALERT_ERROR_LIMIT]
    alert.save(update_fields=["status", "attempts", "last_error"])
    logger.error("alert %s to %s failed: %s", alert.pk, alert.channel, alert.last_error)
    return Delivery(DeliveryOutcome.FAILED, error=alert.last_error)


def alert_give_up(alert_id: int, *, error: str) -> bool:
    """Mark a still-pending alert FAILED (the task ran out of retries); False if it was not."""
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update(of=("self",))
            .filter(pk=alert_id, status=Alert.Status.PENDING)
            .first()
        )
        if alert is None:
            return False
        _failed(alert, redact(error))
    return True


# --- status for the doctor -------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsStatus:
    channels: tuple[str, ...]  # configured channel names; empty: alerting is off
    failed_recently: int  # alerts FAILED among those created in the last 24 h
    last_error: str  # the newest of those failures' error ("" if none)
    last_failed_at: datetime | None  # when that failed alert was created
    pending_stuck: int  # still PENDING after ``ALERT_PENDING_STALE_AFTER``
    oldest_pending_at: datetime | None  # when the oldest of those was created


def alerts_status(
    *, now: datetime | None = None, stale_after: timedelta = ALERT_PENDING_STALE_AFTER
) -> AlertsStatus:
    """What the doctor needs to say whether alerts reach people."""
    moment = now or timezone.now()
    failed = Alert.objects.filter(
        status=Alert.Status.FAILED, created_at__gte=moment - timedelta(hours=24)
    )
    newest = failed.order_by("-created_at", "-id").values_list("last_error", "created_at").first()
    stuck = Alert.objects.filter(status=Alert.Status.PENDING, created_at__lt=moment - stale_after)
    stuck = stuck.filter(
        Q(next_attempt_at__lt=moment - ALERT_OVERDUE_AFTER) | Q(next_attempt_at__isnull=True)
    )
    oldest = stuck.order_by("created_at").values_list("created_at", flat=True).first()
    return AlertsStatus(
        channels=tuple(str(channel) for channel in alerts_channels()),
        failed_recently=failed.count(),
        last_error=newest[0] if newest else "",
        last_failed_at=newest[1] if newest else None,
        pending_stuck=stuck.count(),
        oldest_pending_at=oldest,
    )
