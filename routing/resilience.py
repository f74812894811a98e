"""The one retry policy every venue call goes through (SPEC §6 "Resilience", §13).

python-binance has no retries of its own: a non-2xx answer raises ``BinanceAPIException``
(``status_code``, ``code``, ``message``, ``response`` with headers), a non-JSON 2xx raises
``BinanceRequestException``, and network failures surface as plain ``requests`` exceptions.
``classify`` turns any of them into one ``Outcome``:

=========  ======================================================  ============================
outcome    errors                                                  what the caller does
=========  ======================================================  ============================
BANNED     HTTP 418 (IP banned; Retry-After says for how long)     halt routing, raise an alarm
RETRY      HTTP 429 (rate limit; wait Retry-After);                back off and retry
           -1003 too many requests; -1008 throttled by
           system-level protection; 503 "Service Unavailable."
           (failed, not executed); a connection that was never
           established (``requests.ConnectTimeout``, refused)
CLOCK      -1021 timestamp outside recvWindow                      re-sync server time, retry
NOT_FOUND  -2013 order does not exist                              the one definitive "it was
                                                                   not placed": resubmit
UNKNOWN    read timeout; connection reset / aborted after the      query the order by client
           request went out; any other ``requests`` error; other   order id before anything
           HTTP 5xx incl. 503 "Unknown error..."; HTTP 408;        else; never retry blindly
           -1006, -1007; a non-JSON 2xx
           (``BinanceRequestException``); any exception this
           module does not recognise
FATAL      -2010, -2019 (margin), -1013, -4164 (filters), -1111,   record on the order, never
           -2022, -4015, -1102, -1106, any other HTTP 4xx; a       retry
           malformed URL (nothing was sent)
=========  ======================================================  ============================

Why UNKNOWN is the default: Binance documents that a 5xx means the execution status is unknown
and could have been a success, and a client order id only dedupes against *open* orders
(SPEC §13), so a blind retry after a lost answer can duplicate a filled order. Treating an
unrecognised error as UNKNOWN costs one status query; treating it as RETRY could cost a
duplicate order.

Precedence: HTTP 418 and 429 first (their bodies carry -1003 too), then the error code, then
the 503 message, then the HTTP status (408, other 4xx, the rest).

``RetryPolicy`` is written plainly rather than on tenacity: it needs an injectable monotonic
clock (tenacity reads ``time.monotonic`` itself), an injectable random source for the jitter
(tenacity's jittered waits call the ``random`` module), a time cap that counts the *next* wait,
and a different exception for each outcome. Those would replace tenacity's wait, stop, retry
and error handling, leaving only a loop that is shorter to write than to configure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from random import random as uniform_unit_interval
from typing import TypeVar

import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException
from urllib3.exceptions import MaxRetryError, NewConnectionError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Binance error codes (USD-M futures, "Error Codes" in the API documentation).
TOO_MANY_REQUESTS = -1003
UNEXPECTED_RESPONSE = -1006  # execution status unknown
TIMEOUT = -1007  # execution status unknown
SERVER_BUSY = -1008  # request throttled by system-level protection
INVALID_TIMESTAMP = -1021
NO_SUCH_ORDER = -2013
RETRYABLE_CODES = frozenset({TOO_MANY_REQUESTS, SERVER_BUSY})
UNKNOWN_CODES = frozenset({UNEXPECTED_RESPONSE, TIMEOUT})
FATAL_CODES = frozenset(
    {
        -1013,  # invalid message: a filter failed (LOT_SIZE, PRICE_FILTER, ...)
        -1102,  # mandatory parameter empty or malformed
        -1106,  # parameter sent when not required
        -1111,  # precision over the maximum defined for this asset
        -2010,  # new order rejected
        -2019,  # margin is insufficient
        -2022,  # reduce-only order rejected
        -4015,  # client order id is not valid
        -4164,  # notional below the minimum
    }
)

SERVICE_UNAVAILABLE_MESSAGE = "service unavailable"

# Raised before a request leaves the process: a bad URL can never have reached the venue.
_NOT_SENT_REQUEST_ERRORS = (
    requests.exceptions.URLRequired,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)


class Outcome(StrEnum):
    RETRY = "retry"
    UNKNOWN = "unknown"
    CLOCK = "clock"
    BANNED = "banned"
    FATAL = "fatal"
    NOT_FOUND = "not_found"


def classify(error: BaseException) -> Outcome:
    """What a failed venue call means for the order (see the table in the module docstring)."""
    if isinstance(error, BinanceAPIException):
        return _classify_api_error(error)
    if isinstance(error, BinanceRequestException):
        # The venue answered 2xx but the body was not JSON: it may well have executed.
        return Outcome.UNKNOWN
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return Outcome.RETRY
    if isinstance(error, requests.exceptions.ConnectionError) and _never_connected(error):
        return Outcome.RETRY
    if isinstance(error, _NOT_SENT_REQUEST_ERRORS):
        return Outcome.FATAL
    return Outcome.UNKNOWN


def _classify_api_error(error: BinanceAPIException) -> Outcome:
    status = _int_or_none(getattr(error, "status_code", None))
    code = _int_or_none(getattr(error, "code", None))
    message = str(getattr(error, "message", "") or "").strip().lower()
    # A non-JSON body (python-binance then reports "Invalid JSON error message ...") is
    # matched on the body itself.
    body = str(getattr(getattr(error, "response", None), "text", "") or "").strip().lower()
    if status == 418:
        return Outcome.BANNED
    if status == 429 or code in RETRYABLE_CODES:
        return Outcome.RETRY
    if code == INVALID_TIMESTAMP:
        return Outcome.CLOCK
    if code == NO_SUCH_ORDER:
        return Outcome.NOT_FOUND
    if code in UNKNOWN_CODES:
        return Outcome.UNKNOWN
    if code in FATAL_CODES:
        return Outcome.FATAL
    if status == 503 and (
        message.startswith(SERVICE_UNAVAILABLE_MESSAGE)
        or body.startswith(SERVICE_UNAVAILABLE_MESSAGE)
    ):
        return Outcome.RETRY
    if status == 408:
        # Binance's 408: timed out waiting for the backend, execution status unknown.
        return Outcome.UNKNOWN
    if status is not None and 400 <= status < 500:
        return Outcome.FATAL
    # 5xx (incl. 503 "Unknown error...") and anything stranger: it may have executed.
    return Outcome.UNKNOWN


def _never_connected(error: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection was never established, so no request bytes left.

    requests wraps urllib3's ``MaxRetryError(reason=NewConnectionError)`` for a refused
    connection or a failed DNS lookup; a reset or abort after sending is a ``ProtocolError``.
    """
    cause = error.args[0] if error.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def retry_after_seconds(error: BaseException) -> float | None:
    """The ``Retry-After`` of the venue's answer, in seconds, or None.

    Binance sends whole seconds on 429 and 418. The HTTP-date form (legal in HTTP, not used by
    Binance) and anything unparsable give None: the caller's own back-off then applies.
    """
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        raw = headers.get("Retry-After")
    except AttributeError:
        return None
    if raw is None:
        return None
    try:
        seconds = float(str(raw).strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


class VenueCallError(Exception):
    """Base of what ``RetryPolicy.call`` raises; the venue's own exception is ``__cause__``."""


class OutcomeUnknown(VenueCallError):
    """The request may have executed: query by client order id before trying again."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"outcome unknown: {original!r}")
        self.original = original


class VenueBanned(VenueCallError):
    """HTTP 418: this IP is banned. Halt routing; ``retry_after`` seconds if the venue said."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"IP banned by the venue (Retry-After: {retry_after})")
        self.retry_after = retry_after


class VenueRejected(VenueCallError):
    """A definitive refusal: record it on the order, never retry."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"rejected by the venue (code {code}): {message}")
        self.code = code
        self.message = message


class OrderNotFound(VenueRejected):
    """-2013: the venue has no such order. For a status query, the order was never placed."""


class RetriesExhausted(VenueCallError):
    """Retryable failures went on past the attempt or time cap; repeated, they halt routing."""

    def __init__(self, last_error: BaseException, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {last_error!r}")
        self.last_error = last_error
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, honouring Retry-After, capped in attempts and time.

    ``max_attempts`` counts calls of ``fn`` (1 = no retry). ``max_total_seconds`` bounds the
    time from the first call to the start of the last one: a retry whose wait would cross it
    is not made.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_total_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    random: Callable[[], float] = uniform_unit_interval
    # Told of every failed call before it is classified (the metrics count them by code); an
    # exception from it is logged and dropped: counting must never change what trading does.
    on_error: Callable[[BaseException], None] = lambda _error: None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_total_seconds < 0:
            raise ValueError("delays and the time cap must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**retry_number)).

        ``retry_number`` is 0 before the first retry.
        """
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry_number, 64))
        return self.random() * ceiling

    def call(self, fn: Callable[[], T], *, on_clock_skew: Callable[[], None] | None = None) -> T:
        """Run ``fn`` until it returns, retrying only RETRY and CLOCK outcomes.

        Raises ``OutcomeUnknown``, ``VenueBanned``, ``VenueRejected`` (``OrderNotFound`` for
        -2013) at once, and ``RetriesExhausted`` when a cap is reached. ``on_clock_skew`` runs
        before each retry of a -1021; an exception from it propagates unchanged.
        """
        started = self.clock()
        attempts = 0
        while True:
            attempts += 1
            try:
                return fn()
            except Exception as error:
                try:
                    self.on_error(error)
                except Exception:
                    logger.exception("venue error hook failed")
                outcome = classify(error)
                if outcome is Outcome.UNKNOWN:
                    raise OutcomeUnknown(error) from error
                if outcome is Outcome.BANNED:
                    raise VenueBanned(retry_after_seconds(error)) from error
                if outcome is Outcome.NOT_FOUND:
                    raise OrderNotFound(*_code_and_message(error)) from error
                if outcome is Outcome.FATAL:
                    raise VenueRejected(*_code_and_message(error)) from error
                if attempts >= self.max_attempts:
                    raise RetriesExhausted(error, attempts) from error
                delay = self.backoff(attempts - 1)
                retry_after = retry_after_seconds(error)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                if self.clock() - started + delay > self.max_total_seconds:
                    raise RetriesExhausted(error, attempts) from error
                if outcome is Outcome.CLOCK and on_clock_skew is not None:
                    on_clock_skew()
                self.sleep(delay)


def _code_and_message(error: BaseException) -> tuple[int | None, str]:
    code = _int_or_none(getattr(error, "code", None))
    message = getattr(error, "message", None)
    return code, str(message) if message is not None else repr(error)
