"""The retry policy (routing/resilience.py): every classification row with the exceptions
python-binance and requests really raise, Retry-After, full jitter, the caps, and which
outcomes are never retried."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError

from routing.resilience import (
    OrderNotFound,
    Outcome,
    OutcomeUnknown,
    RetriesExhausted,
    RetryPolicy,
    VenueBanned,
    VenueRejected,
    classify,
    retry_after_seconds,
)

# --- the errors, built the way python-binance and requests build them ---------------------


def binance_error(
    status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
) -> BinanceAPIException:
    """What python-binance's ``_handle_response`` raises for a non-2xx answer."""
    response = requests.Response()
    response.status_code = status
    response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    response.headers.update(headers or {})
    return BinanceAPIException(response, response.status_code, response.text)


def api_error(status: int, code: int, msg: str = "", **headers: str) -> BinanceAPIException:
    return binance_error(
        status, {"code": code, "msg": msg}, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def listening_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A one-shot TCP server on 127.0.0.1 that hands the accepted connection to a behaviour."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(behaviour: Callable[[socket.socket], None]) -> str:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()

        def serve() -> None:
            connection, _ = server.accept()
            connection.recv(65536)  # the request arrived: from here on it may have executed
            behaviour(connection)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.getsockname()[1]}/fapi/v1/order"

    yield start
    for server, thread in servers:
        thread.join(timeout=5)
        server.close()


def reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def raised_by(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("expected the call to raise")


# --- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # 418 / 429 (their bodies carry -1003, the HTTP status decides)
        (
            api_error(
                418,
                -1003,
                "Way too much request weight used; IP banned until 1.",
                Retry_After="120",
            ),
            Outcome.BANNED,
        ),
        (
            api_error(429, -1003, "Too many requests; current limit is 2400.", Retry_After="7"),
            Outcome.RETRY,
        ),
        (api_error(429, -1015, "Too many new orders."), Outcome.RETRY),
        (api_error(400, -1003, "Too many requests queued."), Outcome.RETRY),
        # the three meanings of a futures 503
        (api_error(503, -1008, "Request throttled by system-level protection."), Outcome.RETRY),
        (binance_error(503, "Service Unavailable."), Outcome.RETRY),
        (api_error(503, -1000, "Service Unavailable."), Outcome.RETRY),
        (
            api_error(503, -1000, "Unknown error, please check your request or try again later."),
            Outcome.UNKNOWN,
        ),
        (binance_error(503, "<html>upstream</html>"), Outcome.UNKNOWN),
        # other 5xx and the "execution status unknown" codes
        (binance_error(500, "Internal Server Error"), Outcome.UNKNOWN),
        (binance_error(502, "Bad Gateway"), Outcome.UNKNOWN),
        (binance_error(504, "Gateway Timeout"), Outcome.UNKNOWN),
        (
            api_error(500, -1006, "An unexpected response was received from the message bus."),
            Outcome.UNKNOWN,
        ),
        (
            api_error(408, -1007, "Timeout waiting for response from backend server."),
            Outcome.UNKNOWN,
        ),
        # clock and not-found
        (
            api_error(400, -1021, "Timestamp for this request is outside of the recvWindow."),
            Outcome.CLOCK,
        ),
        (api_error(400, -2013, "Order does not exist."), Outcome.NOT_FOUND),
        # definitive refusals
        (api_error(400, -2010, "Order would immediately trigger."), Outcome.FATAL),
        (api_error(400, -2019, "Margin is insufficient."), Outcome.FATAL),
        (api_error(400, -1013, "Filter failure: LOT_SIZE"), Outcome.FATAL),
        (
            api_error(400, -1111, "Precision is over the maximum defined for this asset."),
            Outcome.FATAL,
        ),
        (api_error(400, -4164, "Order's notional must be no smaller than 100."), Outcome.FATAL),
        (api_error(400, -2022, "ReduceOnly Order is rejected."), Outcome.FATAL),
        (api_error(400, -4015, "Client order id is not valid."), Outcome.FATAL),
        (api_error(400, -1102, "Mandatory parameter 'quantity' was not sent."), Outcome.FATAL),
        (api_error(400, -1106, "Parameter 'price' sent when not required."), Outcome.FATAL),
        (api_error(401, -2015, "Invalid API-key, IP, or permissions for action."), Outcome.FATAL),
        (api_error(400, -1121, "Invalid symbol."), Outcome.FATAL),
        (binance_error(404, "<html>Not Found</html>"), Outcome.FATAL),
        (binance_error(408, ""), Outcome.UNKNOWN),
        # python-binance's non-JSON 2xx: the venue accepted something
        (BinanceRequestException("Invalid Response: <html>"), Outcome.UNKNOWN),
        # requests errors that cannot have reached the venue
        (
            requests.exceptions.ConnectTimeout(
                MaxRetryError(
                    HTTPConnectionPool("127.0.0.1"), "/fapi/v1/order", ConnectTimeoutError()
                )
            ),
            Outcome.RETRY,
        ),
        (requests.exceptions.InvalidURL("http://[::1"), Outcome.FATAL),
        (requests.exceptions.MissingSchema("fapi.binance.com/fapi/v1/order"), Outcome.FATAL),
        # and ones that may have
        (requests.exceptions.ReadTimeout("read timed out"), Outcome.UNKNOWN),
        (
            requests.exceptions.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
            ),
            Outcome.UNKNOWN,
        ),
        (requests.exceptions.ConnectionError("something"), Outcome.UNKNOWN),
        (requests.exceptions.ChunkedEncodingError("truncated"), Outcome.UNKNOWN),
        (requests.exceptions.SSLError("bad record mac"), Outcome.UNKNOWN),
        (TimeoutError(), Outcome.UNKNOWN),
        (ValueError("a bug after the request went out"), Outcome.UNKNOWN),
    ],
    ids=lambda value: value.value if isinstance(value, Outcome) else None,
)
def test_it_classifies_every_row_of_the_table(error: BaseException, outcome: Outcome) -> None:
    assert classify(error) is outcome


class TestRealNetworkErrors:
    """The requests exceptions a live socket produces, not hand-made look-alikes."""

    def test_a_refused_connection_sent_nothing_so_it_is_retried(self) -> None:
        error = raised_by(lambda: requests.post(f"http://127.0.0.1:{closed_port()}/", timeout=2))
        assert type(error) is requests.exceptions.ConnectionError
        assert classify(error) is Outcome.RETRY

    def test_a_reset_after_sending_is_unknown(self, listening_server: Any) -> None:
        url = listening_server(reset)
        error = raised_by(lambda: requests.post(url, data="symbol=BTCUSDT", timeout=2))
        assert type(error) is requests.exceptions.ConnectionError
        assert classify(error) is Outcome.UNKNOWN

    def test_a_close_without_answer_after_sending_is_unknown(self, listening_server: Any) -> None:
        url = listening_server(lambda connection: connection.close())
        error = raised_by(lambda: requests.post(url, data="symbol=BTCUSDT", timeout=2))
        assert classify(error) is Outcome.UNKNOWN

    def test_a_read_timeout_is_unknown(self, listening_server: Any) -> None:
        finished = threading.Event()

        def stall(connection: socket.socket) -> None:
            finished.wait(timeout=5)
            connection.close()

        url = listening_server(stall)
        error = raised_by(lambda: requests.post(url, data="symbol=BTCUSDT", timeout=0.2))
        finished.set()
        assert type(error) is requests.exceptions.ReadTimeout
        assert classify(error) is Outcome.UNKNOWN


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [("7", 7.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5)],
    )
    def test_it_reads_seconds(self, header: str, seconds: float) -> None:
        assert retry_after_seconds(api_error(429, -1003, Retry_After=header)) == seconds

    def test_the_header_name_is_case_insensitive(self) -> None:
        error = binance_error(429, {"code": -1003, "msg": ""}, {"retry-after": "3"})
        assert retry_after_seconds(error) == 3.0

    @pytest.mark.parametrize(
        "header", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", "", "-5", "nan", "inf"]
    )
    def test_a_date_or_garbage_gives_none(self, header: str) -> None:
        assert retry_after_seconds(api_error(429, -1003, Retry_After=header)) is None

    def test_no_header_or_no_response_gives_none(self) -> None:
        assert retry_after_seconds(api_error(429, -1003)) is None
        assert retry_after_seconds(requests.exceptions.ReadTimeout()) is None
        assert retry_after_seconds(ValueError()) is None


# --- the policy ---------------------------------------------------------------------------


class FakeTime:
    """A monotonic clock that only moves when the policy sleeps (or a call takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A venue call that raises the given errors in turn, then returns ``result``."""

    def __init__(
        self,
        *errors: BaseException,
        result: str = "ok",
        takes: float = 0.0,
        time: FakeTime | None = None,
    ) -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0
        self.takes = takes
        self.time = time

    def __call__(self) -> str:
        self.calls += 1
        if self.time is not None:
            self.time.now += self.takes
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def policy(time: FakeTime, *, random: float = 1.0, **changes: Any) -> RetryPolicy:
    settings: dict[str, Any] = {
        "max_attempts": 5,
        "base_delay": 0.5,
        "max_delay": 10.0,
        "max_total_seconds": 60.0,
        **changes,
    }
    return RetryPolicy(**settings, sleep=time.sleep, clock=time.clock, random=lambda: random)


def throttled() -> BinanceAPIException:
    return api_error(503, -1008, "Request throttled by system-level protection.")


class TestBackOff:
    def test_a_success_returns_at_once_without_sleeping(self) -> None:
        time = FakeTime()
        assert policy(time).call(Script()) == "ok"
        assert time.sleeps == []

    def test_retryable_errors_back_off_exponentially_up_to_the_max_delay(self) -> None:
        time = FakeTime()
        venue = Script(*[throttled() for _ in range(6)])
        result = policy(time, max_attempts=7, max_delay=5.0).call(venue)
        assert result == "ok"
        assert venue.calls == 7
        # random() = 1.0 shows the ceiling: base * 2**n, capped at max_delay
        assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]

    @pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
    def test_full_jitter_scales_the_whole_delay(self, draw: float) -> None:
        time = FakeTime()
        policy(time, random=draw).call(Script(throttled(), throttled(), throttled()))
        assert time.sleeps == pytest.approx([0.5 * draw, 1.0 * draw, 2.0 * draw])

    def test_the_real_jitter_stays_within_zero_and_the_ceiling(self) -> None:
        real = RetryPolicy(base_delay=1.0, max_delay=8.0)
        for retry_number in range(10):
            ceiling = min(8.0, 2.0**retry_number)
            draws = [real.backoff(retry_number) for _ in range(200)]
            assert all(0.0 <= draw <= ceiling for draw in draws)
            assert max(draws) > ceiling / 2  # spread over the interval, not a fixed delay

    def test_it_waits_exactly_retry_after_when_longer_than_the_backoff(self) -> None:
        time = FakeTime()
        venue = Script(api_error(429, -1003, "Too many requests.", Retry_After="7"))
        assert policy(time).call(venue) == "ok"
        assert time.sleeps == [7.0]

    def test_it_keeps_the_backoff_when_longer_than_retry_after(self) -> None:
        time = FakeTime()
        venue = Script(throttled(), throttled(), api_error(429, -1003, Retry_After="1"))
        policy(time, base_delay=2.0).call(venue)
        assert time.sleeps == [2.0, 4.0, 8.0]

    def test_retry_after_is_honoured_even_with_zero_jitter(self) -> None:
        time = FakeTime()
        policy(time, random=0.0).call(Script(api_error(429, -1003, Retry_After="3")))
        assert time.sleeps == [3.0]

    def test_retry_after_is_not_cut_by_max_delay(self) -> None:
        time = FakeTime()
        policy(time, max_delay=1.0).call(Script(api_error(429, -1003, Retry_After="30")))
        assert time.sleeps == [30.0]

    def test_a_connection_never_made_is_retried(self) -> None:
        time = FakeTime()
        venue = Script(requests.exceptions.ConnectTimeout("connect timed out"))
        assert policy(time).call(venue) == "ok"
        assert venue.calls == 2


class TestCaps:
    def test_it_gives_up_after_max_attempts_with_the_last_error(self) -> None:
        time = FakeTime()
        errors = [throttled() for _ in range(3)]
        venue = Script(*errors)
        with pytest.raises(RetriesExhausted) as raised:
            policy(time, max_attempts=3).call(venue)
        assert venue.calls == 3
        assert raised.value.attempts == 3
        assert raised.value.last_error is errors[-1]
        assert raised.value.__cause__ is errors[-1]
        assert len(time.sleeps) == 2  # no pointless wait after the last attempt

    def test_one_attempt_means_no_retry(self) -> None:
        time = FakeTime()
        with pytest.raises(RetriesExhausted):
            policy(time, max_attempts=1).call(Script(throttled()))
        assert time.sleeps == []

    def test_it_gives_up_when_the_next_wait_would_cross_the_time_cap(self) -> None:
        time = FakeTime()
        venue = Script(*[throttled() for _ in range(10)], time=time, takes=1.0)
        with pytest.raises(RetriesExhausted) as raised:
            policy(time, max_attempts=100, max_total_seconds=10.0).call(venue)
        # calls at t=0 (1 s), sleep .5, t=1.5 (1 s), sleep 1, t=3.5 (1 s), sleep 2,
        # t=6.5 (1 s): now 7.5 s elapsed, and 7.5 + 4 > 10, so no fifth call.
        assert venue.calls == 4
        assert raised.value.attempts == 4
        assert time.sleeps == [0.5, 1.0, 2.0]
        assert time.now - 1000.0 == pytest.approx(7.5)

    def test_a_retry_after_beyond_the_time_cap_gives_up_at_once(self) -> None:
        time = FakeTime()
        venue = Script(api_error(429, -1003, Retry_After="3600"))
        with pytest.raises(RetriesExhausted):
            policy(time, max_total_seconds=60.0).call(venue)
        assert venue.calls == 1
        assert time.sleeps == []


class TestNeverRetried:
    @pytest.mark.parametrize(
        "error",
        [
            requests.exceptions.ReadTimeout("read timed out"),
            requests.exceptions.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError())
            ),
            api_error(503, -1000, "Unknown error, please check your request or try again later."),
            api_error(500, -1006, "An unexpected response was received from the message bus."),
            api_error(500, -1007, "Timeout waiting for response from backend server."),
            binance_error(502, "Bad Gateway"),
            BinanceRequestException("Invalid Response: <html>"),
        ],
    )
    def test_an_unknown_outcome_is_raised_for_the_caller_to_query(
        self, error: BaseException
    ) -> None:
        time = FakeTime()
        venue = Script(error)
        with pytest.raises(OutcomeUnknown) as raised:
            policy(time).call(venue)
        assert venue.calls == 1
        assert time.sleeps == []
        assert raised.value.original is error
        assert raised.value.__cause__ is error

    def test_a_ban_halts_with_its_retry_after(self) -> None:
        time = FakeTime()
        venue = Script(api_error(418, -1003, "IP banned until 1700000000000.", Retry_After="120"))
        with pytest.raises(VenueBanned) as raised:
            policy(time).call(venue)
        assert venue.calls == 1
        assert raised.value.retry_after == 120.0
        assert time.sleeps == []

    def test_a_refusal_is_raised_with_the_venue_code_and_message(self) -> None:
        time = FakeTime()
        venue = Script(api_error(400, -2019, "Margin is insufficient."))
        with pytest.raises(VenueRejected) as raised:
            policy(time).call(venue)
        assert (raised.value.code, raised.value.message) == (-2019, "Margin is insufficient.")
        assert venue.calls == 1
        assert time.sleeps == []

    def test_order_does_not_exist_is_its_own_rejection(self) -> None:
        time = FakeTime()
        venue = Script(api_error(400, -2013, "Order does not exist."))
        with pytest.raises(OrderNotFound) as raised:
            policy(time).call(venue)
        assert isinstance(raised.value, VenueRejected)
        assert raised.value.code == -2013
        assert venue.calls == 1

    def test_keyboard_interrupt_is_not_swallowed(self) -> None:
        def interrupted() -> str:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            policy(FakeTime()).call(interrupted)


class TestClockSkew:
    def test_it_resyncs_the_clock_then_retries(self) -> None:
        time = FakeTime()
        events: list[str] = []
        skew = api_error(400, -1021, "Timestamp for this request is outside of the recvWindow.")

        def venue() -> str:
            events.append("call")
            if events.count("call") == 1:
                raise skew
            return "ok"

        def resync() -> None:
            events.append("resync")

        assert policy(time).call(venue, on_clock_skew=resync) == "ok"
        assert events == ["call", "resync", "call"]

    def test_without_a_hook_it_still_retries(self) -> None:
        time = FakeTime()
        venue = Script(api_error(400, -1021, "Timestamp outside recvWindow."))
        assert policy(time).call(venue) == "ok"
        assert venue.calls == 2

    def test_the_hook_is_not_called_for_other_retries(self) -> None:
        calls: list[None] = []
        policy(FakeTime()).call(Script(throttled()), on_clock_skew=lambda: calls.append(None))
        assert calls == []

    def test_repeated_skew_is_capped_like_any_retry(self) -> None:
        skews = [api_error(400, -1021, "Timestamp outside recvWindow.") for _ in range(3)]
        resyncs: list[None] = []
        with pytest.raises(RetriesExhausted):
            policy(FakeTime(), max_attempts=3).call(
                Script(*skews), on_clock_skew=lambda: resyncs.append(None)
            )
        assert len(resyncs) == 2


@pytest.mark.parametrize(
    "changes",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}, {"max_total_seconds": -1.0}],
)
def test_it_refuses_a_nonsensical_policy(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**changes)
