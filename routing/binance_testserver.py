"""A local, deterministic Binance USD-M futures server for tests and development.

Real HTTP on 127.0.0.1 (stdlib ``ThreadingHTTPServer``), Binance's paths, parameter and field
names, error bodies ``{"code": -XXXX, "msg": "..."}`` and HTTP statuses, so python-binance's
``Client`` works against it unmodified once ``FUTURES_URL`` is set to :attr:`BinanceTestServer.url`.

The simulation is deliberately small: one USDT wallet in cross margin, one-way position mode,
fills at the price the test set with :meth:`BinanceTestServer.set_price` (no order book), fees at
configurable maker/taker rates, realised PnL on the average entry price, funding at each
symbol's interval. Conditional orders (STOP_MARKET / TAKE_PROFIT_MARKET) live on the algo-order
endpoints (``/fapi/v1/algoOrder``), as on Binance since December 2025 and as python-binance
1.0.37 routes them; sending one to ``/fapi/v1/order`` answers -4120.

Faults are scripted with :attr:`BinanceTestServer.faults` (see :class:`FaultPlan`), either queued
for the next matching requests or drawn from a seeded random schedule, so a test can put an
order router through 429/418/5xx/503/-1021/timeouts/resets and then compare
:attr:`BinanceTestServer.accepted_orders` with what the router recorded.

No Django imports: usable from plain pytest, scripts and the ``binance_testserver`` command.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote_plus, urlsplit

__all__ = [
    "FAULT_KINDS",
    "AcceptedOrder",
    "AlgoOrder",
    "BinanceTestServer",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Income",
    "Order",
    "Position",
    "RequestRecord",
    "SymbolSpec",
    "Trade",
]

FaultKind = Literal[
    "rate_limited",
    "banned",
    "server_error",
    "unknown_503",
    "unavailable_503",
    "internal_503",
    "throttled_503",
    "timeout_1007",
    "timestamp_1021",
    "accepted_then_timeout",
    "accepted_then_reset",
    "slow",
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limited",
    "banned",
    "server_error",
    "unknown_503",
    "unavailable_503",
    "internal_503",
    "throttled_503",
    "timeout_1007",
    "timestamp_1021",
    "accepted_then_timeout",
    "accepted_then_reset",
    "slow",
)
# Faults that may run the request before answering (the others answer without executing it).
_AFTER_EXECUTION: frozenset[str] = frozenset(
    {"accepted_then_timeout", "accepted_then_reset", "slow"}
)
_MAYBE_EXECUTED: frozenset[str] = frozenset({"unknown_503", "timeout_1007"})

CLIENT_ORDER_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^\d{1,20}(\.\d{1,20})?$")
_ZERO = Decimal(0)
_MAX_RECV_WINDOW = 60_000
_DEFAULT_RECV_WINDOW = 5_000
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000

_INTERVALS_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
# Weekly bars open on Monday; the Unix epoch was a Thursday.
_INTERVAL_OFFSET_MS: dict[str, int] = {"1w": 4 * 86_400_000}

_MSG_UNKNOWN_503 = "Unknown error, please check your request or try again later."
_MSG_UNAVAILABLE_503 = "Service Unavailable."
_MSG_INTERNAL_503 = "Internal error; unable to process your request. Please try again."
_MSG_THROTTLED = (
    "Request throttled by system-level protection. Reduce-only/close-position orders are exempt. "
    "Please try again."
)
_MSG_TIMEOUT_1007 = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)
_MSG_1021 = "Timestamp for this request is outside of the recvWindow."
_CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)

Json = Any


class ApiError(Exception):
    """A Binance error answer: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def _s(value: Decimal) -> str:
    """Plain decimal string without exponent or trailing zeros ("0" for zero)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _at(value: Decimal, step: Decimal) -> str:
    """A decimal shown with the number of places of ``step`` (as Binance shows prices/qty)."""
    return format(value.quantize(Decimal(1).scaleb(-_places(step))), "f")


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolSpec:
    """A tradable perpetual: filters, funding interval and the starting price."""

    symbol: str
    price: Decimal
    tick_size: Decimal = Decimal("0.10")
    step_size: Decimal = Decimal("0.001")
    min_qty: Decimal = Decimal("0.001")
    max_qty: Decimal = Decimal("1000")
    market_max_qty: Decimal = Decimal("120")
    min_notional: Decimal = Decimal("100")
    min_price: Decimal = Decimal("0.10")
    max_price: Decimal = Decimal("4529764")
    funding_interval_hours: int = 8
    funding_rate: Decimal = Decimal("0.00010000")
    max_leverage: int = 125

    @property
    def base_asset(self) -> str:
        return self.symbol[:-4] if self.symbol.endswith("USDT") else self.symbol

    @classmethod
    def default(cls, symbol: str, price: Decimal | None = None) -> SymbolSpec:
        """Reasonable filters for a symbol name (BTC/ETH-like defaults, small caps for others)."""
        name = symbol.upper()
        if name == "BTCUSDT":
            return cls(name, price or Decimal("60000"))
        if name == "ETHUSDT":
            return cls(
                name,
                price or Decimal("3000"),
                tick_size=Decimal("0.01"),
                min_notional=Decimal("20"),
                max_qty=Decimal("10000"),
                market_max_qty=Decimal("2000"),
                min_price=Decimal("0.01"),
                max_price=Decimal("306177"),
            )
        return cls(
            name,
            price or Decimal("100"),
            tick_size=Decimal("0.01"),
            step_size=Decimal("0.01"),
            min_qty=Decimal("0.01"),
            max_qty=Decimal("100000"),
            market_max_qty=Decimal("10000"),
            min_notional=Decimal("5"),
            min_price=Decimal("0.01"),
            max_price=Decimal("100000"),
        )


@dataclass
class Order:
    """An order in the (simulated) matching engine, as GET /fapi/v1/order shows it."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    orig_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    position_side: str
    working_type: str
    price_protect: bool
    status: str
    time: int
    update_time: int
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO

    @property
    def is_open(self) -> bool:
        return self.status in {"NEW", "PARTIALLY_FILLED"}

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else _ZERO


@dataclass
class AlgoOrder:
    """A conditional order held by the algo service until its trigger price is crossed."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    reduce_only: bool
    close_position: bool
    position_side: str
    working_type: str
    price_protect: bool
    time_in_force: str
    status: str
    create_time: int
    update_time: int
    trigger_time: int = 0
    actual_order_id: int | None = None
    actual_price: Decimal = _ZERO

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass(frozen=True)
class Trade:
    id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    maker: bool
    time: int


@dataclass
class Position:
    symbol: str
    amount: Decimal = _ZERO
    entry_price: Decimal = _ZERO
    update_time: int = 0


@dataclass(frozen=True)
class Income:
    tran_id: int
    symbol: str
    income_type: str
    income: Decimal
    asset: str
    info: str
    time: int
    trade_id: str


@dataclass(frozen=True)
class AcceptedOrder:
    """One order the server accepted (regular or algo), in acceptance order."""

    seq: int
    kind: Literal["order", "algo"]
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    close_position: bool
    time: int


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw and answered it (``status`` 0: no answer sent)."""

    method: str
    path: str
    params: Mapping[str, str]
    status: int
    code: int | None
    fault: str | None


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A fault for the next matching request(s).

    ``method``/``path`` filter (``None`` matches anything; ``path`` is the full path such as
    ``/fapi/v1/order``); ``count`` how many matching requests it hits. ``retry_after`` is the
    ``Retry-After`` seconds for ``rate_limited``/``banned``; ``status`` the HTTP status for
    ``server_error`` (500 by default, 502/504 also sensible); ``executed`` whether
    ``unknown_503``/``timeout_1007`` ran the request before answering (default True: the
    dangerous case); ``delay`` the seconds ``slow``/``accepted_then_timeout`` wait before
    answering (server defaults ``slow_seconds``/``timeout_seconds``).
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    count: int = 1
    retry_after: int | None = None
    status: int | None = None
    executed: bool | None = None
    delay: float | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path == path
        )


@dataclass
class _RandomSchedule:
    rate: float
    kinds: tuple[FaultKind, ...]
    rng: random.Random
    method: str | None
    path: str | None
    executed_probability: float
    paths: frozenset[str] | None


class FaultPlan:
    """Scripted faults: a FIFO of :class:`Fault` plus an optional seeded random schedule.

    Queued faults are consulted first (the first queued fault that matches the request is used
    and its count decremented); otherwise the random schedule, if any, decides. Every injected
    fault is appended to :attr:`injected` as ``(method, path, kind)``.
    """

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._queue: list[list[Any]] = []  # [Fault, remaining]
        self._random: _RandomSchedule | None = None
        self._seed = seed
        self.injected: list[tuple[str, str, str]] = []

    def push(self, fault: Fault | FaultKind, /, **options: Any) -> Fault:
        """Queue a fault (a :class:`Fault`, or a kind plus the Fault's keyword fields)."""
        item = fault if isinstance(fault, Fault) else Fault(kind=fault, **options)
        if item.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {item.kind!r}")
        with self._lock:
            self._queue.append([item, max(1, item.count)])
        return item

    def random(
        self,
        rate: float,
        kinds: Iterable[FaultKind] = FAULT_KINDS,
        *,
        seed: int | None = None,
        method: str | None = None,
        path: str | None = None,
        paths: Iterable[str] | None = None,
        executed_probability: float = 0.5,
    ) -> None:
        """Inject a fault into each matching request with probability ``rate``.

        The kind is drawn uniformly from ``kinds``; for ``unknown_503``/``timeout_1007`` whether
        the request was executed is drawn with ``executed_probability``. Same seed and same
        request sequence give the same schedule. ``rate=0`` switches it off.
        """
        chosen = tuple(kinds)
        for kind in chosen:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            if rate <= 0 or not chosen:
                self._random = None
                return
            self._random = _RandomSchedule(
                rate=rate,
                kinds=chosen,
                rng=random.Random(self._seed if seed is None else seed),  # noqa: S311
                method=method.upper() if method else None,
                path=path,
                executed_probability=executed_probability,
                paths=frozenset(paths) if paths is not None else None,
            )

    def clear(self) -> None:
        """Drop queued faults and the random schedule."""
        with self._lock:
            self._queue.clear()
            self._random = None

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return [entry[0] for entry in self._queue]

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any (consumes it)."""
        with self._lock:
            for entry in self._queue:
                fault = cast(Fault, entry[0])
                if fault.matches(method, path):
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._queue.remove(entry)
                    self.injected.append((method, path, fault.kind))
                    return fault
            schedule = self._random
            if schedule is None:
                return None
            if schedule.method is not None and schedule.method != method:
                return None
            if schedule.path is not None and schedule.path != path:
                return None
            if schedule.paths is not None and path not in schedule.paths:
                return None
            if schedule.rng.random() >= schedule.rate:
                return None
            kind = schedule.rng.choice(schedule.kinds)
            executed = schedule.rng.random() < schedule.executed_probability
            self.injected.append((method, path, kind))
            return Fault(kind=kind, executed=executed)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    path: str
    query: str
    body: str
    params: dict[str, str]
    api_key: str | None
    duplicate_param: bool = False


_Handler = Callable[[_Request, int], Json]


@dataclass(frozen=True)
class _Route:
    handler: _Handler
    signed: bool
    weight: Callable[[dict[str, str]], int]
    order: bool = False


def _fixed(weight: int) -> Callable[[dict[str, str]], int]:
    return lambda _params: weight


def _with_symbol(one: int, all_symbols: int) -> Callable[[dict[str, str]], int]:
    return lambda params: one if params.get("symbol") else all_symbols


def _kline_weight(params: dict[str, str]) -> int:
    try:
        limit = int(params.get("limit", "500"))
    except ValueError:
        return 1
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    return 5 if limit <= 1000 else 10


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: BinanceTestServer) -> None:
        self.app = app
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections the tests cut on purpose are not errors worth a traceback."""


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "BinanceTestServer/1.0"
    sys_version = ""

    def _dispatch(self) -> None:
        cast(_HTTPServer, self.server).app._serve(self)

    do_GET = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch
    do_PUT = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`BinanceTestServer.requests` instead."""


def _send(
    handler: BaseHTTPRequestHandler, status: int, payload: Json, headers: Mapping[str, str]
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
    except OSError:
        # The client gave up (its timeout) before we answered: exactly what a test may want.
        handler.close_connection = True


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP reset and no response."""
    connection = handler.connection
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass
    handler.close_connection = True


def _parse_pairs(text: str) -> tuple[dict[str, str], bool]:
    params: dict[str, str] = {}
    duplicate = False
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key in params:
            duplicate = True
        params[key] = value
    return params, duplicate


def _strip_signature(text: str) -> tuple[str, str | None]:
    """``text`` without its ``signature=`` pair, and the signature (or None)."""
    parts = text.split("&") if text else []
    kept: list[str] = []
    signature: str | None = None
    for part in parts:
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class BinanceTestServer:
    """A Binance USD-M futures look-alike on 127.0.0.1.

    ``with BinanceTestServer(...) as server:`` starts it on a free port (``port=0``);
    ``server.url`` is the value for ``BINANCE_FUTURES_URL`` (python-binance's ``FUTURES_URL``).
    All state is guarded by one lock; HTTP handlers run in threads.
    """

    def __init__(
        self,
        api_key: str = "test-api-key",
        api_secret: str = "test-api-secret",  # noqa: S107
        symbols: Iterable[SymbolSpec | str] = ("BTCUSDT", "ETHUSDT"),
        *,
        clock: Callable[[], int] | None = None,
        balance: Decimal = Decimal("10000"),
        seed: int = 0,
        taker_fee: Decimal = Decimal("0.0005"),
        maker_fee: Decimal = Decimal("0.0002"),
        leverage: int = 20,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 0.2,
        timeout_seconds: float = 1.0,
        retry_after: int = 1,
        weight_limit: int | None = None,
        ban_after: int = 3,
        include_open_kline: bool = False,
        order_id_start: int = 4_000_000_001,
        enable_withdrawals: bool = False,
    ) -> None:
        self.api_key = api_key
        # What GET /sapi/v1/account/apiRestrictions says of the key (the doctor's withdraw check).
        self.enable_withdrawals = enable_withdrawals
        self.api_secret = api_secret
        self.host = host
        self.port = port
        self.seed = seed
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slow_seconds = slow_seconds
        self.timeout_seconds = timeout_seconds
        self.retry_after = retry_after
        self.weight_limit = weight_limit
        self.ban_after = ban_after
        self.include_open_kline = include_open_kline
        self.faults = FaultPlan(seed)
        self._clock: Callable[[], int] = clock or (lambda: int(time.time() * 1000))
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._walker: threading.Thread | None = None
        self._walk_stop = threading.Event()

        now = self._clock()
        self._specs: dict[str, SymbolSpec] = {}
        for item in symbols:
            spec = item if isinstance(item, SymbolSpec) else SymbolSpec.default(item)
            self._specs[spec.symbol] = spec
        if not self._specs:
            raise ValueError("at least one symbol is needed")
        self._prices: dict[str, Decimal] = {s: spec.price for s, spec in self._specs.items()}
        self._price_times: dict[str, list[int]] = {s: [now] for s in self._specs}
        self._price_values: dict[str, list[Decimal]] = {s: [p] for s, p in self._prices.items()}
        self._funding_rates: dict[str, Decimal] = {
            s: spec.funding_rate for s, spec in self._specs.items()
        }
        self._next_funding: dict[str, int] = {
            s: (now // (spec.funding_interval_hours * _HOUR_MS) + 1)
            * spec.funding_interval_hours
            * _HOUR_MS
            for s, spec in self._specs.items()
        }
        self._leverage: dict[str, int] = {
            s: min(leverage, spec.max_leverage) for s, spec in self._specs.items()
        }
        self._margin_type: dict[str, str] = dict.fromkeys(self._specs, "CROSSED")
        self._dual_side = False
        self._wallet = balance
        self._positions: dict[str, Position] = {s: Position(s, update_time=0) for s in self._specs}
        self._orders: list[Order] = []
        self._orders_by_id: dict[int, Order] = {}
        self._open_by_client_id: dict[str, Order] = {}
        self._algos: list[AlgoOrder] = []
        self._algos_by_id: dict[int, AlgoOrder] = {}
        self._open_algo_by_client_id: dict[str, AlgoOrder] = {}
        self._trades: list[Trade] = []
        self._income: list[Income] = []
        self._accepted: list[AcceptedOrder] = []
        self._requests: list[RequestRecord] = []
        self._order_ids = itertools.count(order_id_start)
        self._algo_ids = itertools.count(1_000_000_001)
        self._trade_ids = itertools.count(700_000_001)
        self._tran_ids = itertools.count(9_000_000_001)
        self._weight_minute = now // _MINUTE_MS
        self._weight_used = 0
        self._orders_this_minute = 0
        self._violations = 0
        self._banned_until = 0
        self._routes = self._build_routes()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> BinanceTestServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"binance-testserver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._walk_stop.set()
        if self._walker is not None:
            self._walker.join(timeout=2)
            self._walker = None
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> BinanceTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_until_interrupted(self) -> None:
        """Block until Ctrl-C (for the management command), then stop."""
        self.start()
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The futures base URL for ``BINANCE_FUTURES_URL`` / python-binance ``FUTURES_URL``."""
        return f"{self.base_url}/fapi"

    # -- test controls ------------------------------------------------------------------------

    def now(self) -> int:
        return self._clock()

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._prices[symbol]

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        """Set the last/mark price; resting LIMIT orders and conditional orders it crosses fill."""
        value = Decimal(price)
        if value <= 0:
            raise ValueError("price must be positive")
        with self._lock:
            if symbol not in self._specs:
                raise KeyError(symbol)
            now = self._clock()
            self._settle_funding(now)
            self._prices[symbol] = value
            times = self._price_times[symbol]
            # Keep the history ordered even if the injected clock went backwards.
            at = max(now, times[-1])
            times.append(at)
            self._price_values[symbol].append(value)
            self._match(symbol, now)

    def set_funding_rate(self, symbol: str, rate: Decimal) -> None:
        with self._lock:
            self._funding_rates[symbol] = rate

    def settle_funding(self, symbol: str, rate: Decimal | None = None) -> Decimal:
        """Charge/pay funding now on ``symbol``'s position; returns the amount (+ = received)."""
        with self._lock:
            return self._apply_funding(
                symbol, self._funding_rates[symbol] if rate is None else rate
            )

    def transfer(self, amount: Decimal, info: str = "TRANSFER") -> None:
        """Deposit (+) or withdraw (-) USDT: a TRANSFER income row, not PnL."""
        with self._lock:
            self._wallet += amount
            self._add_income("", "TRANSFER", amount, info, self._clock(), "")

    def start_price_walk(
        self, interval: float = 1.0, volatility: Decimal = Decimal("0.001"), seed: int | None = None
    ) -> None:
        """Random-walk every price each ``interval`` seconds, seeded (for ``make run``)."""
        if self._walker is not None:
            return
        rng = random.Random(self.seed if seed is None else seed)  # noqa: S311
        self._walk_stop.clear()

        def walk() -> None:
            while not self._walk_stop.wait(interval):
                for symbol, spec in self._specs.items():
                    move = Decimal(str(rng.gauss(0.0, 1.0))) * volatility
                    new = (self.price(symbol) * (1 + move)).quantize(
                        spec.tick_size, rounding=ROUND_DOWN
                    )
                    self.set_price(symbol, max(new, spec.tick_size))

        self._walker = threading.Thread(target=walk, name="binance-testserver-walk", daemon=True)
        self._walker.start()

    # -- book-keeping readable by tests -------------------------------------------------------

    @property
    def accepted_orders(self) -> list[AcceptedOrder]:
        with self._lock:
            return list(self._accepted)

    @property
    def orders(self) -> list[Order]:
        with self._lock:
            return list(self._orders)

    @property
    def algo_orders(self) -> list[AlgoOrder]:
        with self._lock:
            return list(self._algos)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        with self._lock:
            return [o for o in self._orders if o.is_open and symbol in (None, o.symbol)]

    @property
    def trades(self) -> list[Trade]:
        with self._lock:
            return list(self._trades)

    @property
    def income(self) -> list[Income]:
        with self._lock:
            return list(self._income)

    @property
    def positions(self) -> dict[str, Position]:
        with self._lock:
            return {
                s: Position(p.symbol, p.amount, p.entry_price, p.update_time)
                for s, p in self._positions.items()
            }

    def position(self, symbol: str) -> Position:
        return self.positions[symbol]

    @property
    def balance(self) -> Decimal:
        """USDT wallet balance (deposits + realised PnL - fees + funding)."""
        with self._lock:
            return self._wallet

    @property
    def used_weight(self) -> int:
        with self._lock:
            return self._weight_used

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    # -- request pipeline ---------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        request = self._read(handler)
        route = self._routes.get((request.method, request.path))
        headers: dict[str, str] = {}
        with self._lock:
            now = self._clock()
            self._settle_funding(now)
            weight = route.weight(request.params) if route else 1
            self._count_weight(now, weight, order=bool(route and route.order))
            headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight_used)
            if route and route.order:
                headers["X-MBX-ORDER-COUNT-1M"] = str(self._orders_this_minute)

        fault = self.faults.take(request.method, request.path)
        early = self._early_answer(request, fault, now)
        if early is not None:
            status, payload, extra = early
            headers.update(extra)
            self._record(request, status, payload, fault)
            _send(handler, status, payload, headers)
            return

        status, payload = self._execute(request, route, now)
        if fault is None:
            self._record(request, status, payload, None)
            _send(handler, status, payload, headers)
            return
        kind = fault.kind
        if kind == "unknown_503":
            self._record(request, 503, {"code": -1000}, fault)
            _send(handler, 503, {"code": -1000, "msg": _MSG_UNKNOWN_503}, headers)
        elif kind == "timeout_1007":
            self._record(request, 408, {"code": -1007}, fault)
            _send(handler, 408, {"code": -1007, "msg": _MSG_TIMEOUT_1007}, headers)
        elif kind == "accepted_then_reset":
            self._record(request, 0, payload, fault)
            _reset(handler)
        else:  # slow, accepted_then_timeout
            default = self.slow_seconds if kind == "slow" else self.timeout_seconds
            self._record(request, status if kind == "slow" else 0, payload, fault)
            time.sleep(fault.delay if fault.delay is not None else default)
            _send(handler, status, payload, headers)

    def _read(self, handler: BaseHTTPRequestHandler) -> _Request:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length > 0 else ""
        body_params, body_dup = _parse_pairs(body)
        query_params, query_dup = _parse_pairs(split.query)
        params = {**body_params, **query_params}  # the query string wins, as on Binance
        return _Request(
            method=(handler.command or "GET").upper(),
            path=split.path.rstrip("/") or "/",
            query=split.query,
            body=body,
            params=params,
            api_key=handler.headers.get("X-MBX-APIKEY"),
            duplicate_param=body_dup or query_dup,
        )

    def _record(self, request: _Request, status: int, payload: Json, fault: Fault | None) -> None:
        code = payload.get("code") if isinstance(payload, dict) and status >= 400 else None
        with self._lock:
            self._requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    params=dict(request.params),
                    status=status,
                    code=code if isinstance(code, int) else None,
                    fault=fault.kind if fault else None,
                )
            )

    def _count_weight(self, now: int, weight: int, *, order: bool) -> None:
        minute = now // _MINUTE_MS
        if minute != self._weight_minute:
            self._weight_minute = minute
            self._weight_used = 0
            self._orders_this_minute = 0
            self._violations = 0
        self._weight_used += weight
        if order:
            self._orders_this_minute += 1

    def _early_answer(
        self, request: _Request, fault: Fault | None, now: int
    ) -> tuple[int, Json, dict[str, str]] | None:
        """Answers given without executing the request: faults and the weight limit."""
        if fault is not None:
            kind = fault.kind
            retry = str(fault.retry_after if fault.retry_after is not None else self.retry_after)
            if kind == "rate_limited":
                return 429, self._too_many(), {"Retry-After": retry}
            if kind == "banned":
                until = now + int(retry) * 1000
                return 418, self._banned_body(until), {"Retry-After": retry}
            if kind == "server_error":
                status = fault.status or 500
                return status, {"code": -1000, "msg": "Request occur unknown error."}, {}
            if kind == "unavailable_503":
                return 503, {"code": -1001, "msg": _MSG_UNAVAILABLE_503}, {}
            if kind == "internal_503":
                return 503, {"code": -1001, "msg": _MSG_INTERNAL_503}, {}
            if kind == "throttled_503":
                return 503, {"code": -1008, "msg": _MSG_THROTTLED}, {}
            if kind == "timestamp_1021":
                return 400, {"code": -1021, "msg": _MSG_1021}, {}
            executed = True if fault.executed is None else fault.executed
            if kind in _MAYBE_EXECUTED and not executed:
                if kind == "unknown_503":
                    return 503, {"code": -1000, "msg": _MSG_UNKNOWN_503}, {}
                return 408, {"code": -1007, "msg": _MSG_TIMEOUT_1007}, {}
        if self.weight_limit is None:
            return None
        with self._lock:
            if now < self._banned_until:
                seconds = max(1, (self._banned_until - now + 999) // 1000)
                return 418, self._banned_body(self._banned_until), {"Retry-After": str(seconds)}
            if self._weight_used <= self.weight_limit:
                return None
            self._violations += 1
            if self._violations > self.ban_after:
                self._banned_until = now + 120_000
                return 418, self._banned_body(self._banned_until), {"Retry-After": "120"}
            seconds = max(1, (_MINUTE_MS - now % _MINUTE_MS + 999) // 1000)
            return 429, self._too_many(), {"Retry-After": str(seconds)}

    def _too_many(self) -> Json:
        limit = self.weight_limit or 2400
        return {
            "code": -1003,
            "msg": f"Too many requests; current limit is {limit} requests per minute. Please use "
            "the websocket for live updates to avoid polling the API.",
        }

    @staticmethod
    def _banned_body(until: int) -> Json:
        return {
            "code": -1003,
            "msg": f"Way too many requests; IP banned until {until}. Please use the websocket for "
            "live updates to avoid bans.",
        }

    def _execute(self, request: _Request, route: _Route | None, now: int) -> tuple[int, Json]:
        if route is None:
            return 404, {
                "code": -5000,
                "msg": f"Path {request.path}, Method {request.method} is invalid",
            }
        try:
            if request.duplicate_param:
                raise ApiError(400, -1101, "Duplicate values for a parameter detected.")
            if route.signed:
                self._authenticate(request, now)
            with self._lock:
                return 200, route.handler(request, now)
        except ApiError as error:
            return error.status, {"code": error.code, "msg": error.msg}

    def _authenticate(self, request: _Request, now: int) -> None:
        key = request.api_key
        if not key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(
                401, -2015, "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1"
            )
        query, query_sig = _strip_signature(request.query)
        body, body_sig = _strip_signature(request.body)
        signature = query_sig if query_sig is not None else body_sig
        if not signature:
            raise ApiError(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        total = query + body
        candidates = {total, unquote_plus(query) + unquote_plus(body)}
        if query and body:
            candidates.add(f"{query}&{body}")
        secret = self.api_secret.encode()
        expected = [
            hmac.new(secret, text.encode(), hashlib.sha256).hexdigest() for text in candidates
        ]
        given = unquote_plus(signature).strip().lower()
        if not any(hmac.compare_digest(given, digest) for digest in expected):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        params = request.params
        window = _DEFAULT_RECV_WINDOW
        if params.get("recvWindow"):
            try:
                window = int(params["recvWindow"])
            except ValueError:
                raise ApiError(
                    400, -1130, "Data sent for parameter 'recvWindow' is not valid."
                ) from None
            if window > _MAX_RECV_WINDOW or window <= 0:
                raise ApiError(400, -1131, "recvWindow must be less than 60000")
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise ApiError(
                400,
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ) from None
        if timestamp >= now + 1000:
            raise ApiError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > window:
            raise ApiError(400, -1021, _MSG_1021)

    # -- routing table ------------------------------------------------------------------------

    def _build_routes(self) -> dict[tuple[str, str], _Route]:
        r = _Route
        return {
            ("GET", "/fapi/v1/ping"): r(lambda _q, _n: {}, False, _fixed(1)),
            ("GET", "/fapi/v1/time"): r(lambda _q, n: {"serverTime": n}, False, _fixed(1)),
            ("GET", "/fapi/v1/exchangeInfo"): r(self._exchange_info, False, _fixed(1)),
            ("GET", "/fapi/v1/klines"): r(self._klines, False, _kline_weight),
            ("GET", "/fapi/v1/premiumIndex"): r(self._premium_index, False, _fixed(1)),
            ("GET", "/fapi/v1/fundingInfo"): r(self._funding_info, False, _fixed(0)),
            ("GET", "/fapi/v1/ticker/price"): r(self._ticker_price, False, _with_symbol(1, 2)),
            ("GET", "/fapi/v2/ticker/price"): r(self._ticker_price, False, _with_symbol(1, 2)),
            ("POST", "/fapi/v1/order"): r(self._new_order, True, _fixed(0), order=True),
            ("GET", "/fapi/v1/order"): r(self._query_order, True, _fixed(1)),
            ("DELETE", "/fapi/v1/order"): r(self._cancel_order, True, _fixed(1)),
            ("GET", "/fapi/v1/openOrders"): r(self._open_orders, True, _with_symbol(1, 40)),
            ("GET", "/fapi/v1/allOrders"): r(self._all_orders, True, _fixed(5)),
            ("DELETE", "/fapi/v1/allOpenOrders"): r(self._cancel_all, True, _fixed(1)),
            ("POST", "/fapi/v1/algoOrder"): r(self._new_algo, True, _fixed(0), order=True),
            ("GET", "/fapi/v1/algoOrder"): r(self._query_algo, True, _fixed(1)),
            ("DELETE", "/fapi/v1/algoOrder"): r(self._cancel_algo, True, _fixed(1)),
            ("GET", "/fapi/v1/openAlgoOrders"): r(self._open_algos, True, _with_symbol(1, 40)),
            ("GET", "/fapi/v1/allAlgoOrders"): r(self._all_algos, True, _fixed(5)),
            ("DELETE", "/fapi/v1/algoOpenOrders"): r(self._cancel_all_algos, True, _fixed(1)),
            ("GET", "/fapi/v1/userTrades"): r(self._user_trades, True, _fixed(5)),
            ("GET", "/fapi/v2/positionRisk"): r(self._position_risk_v2, True, _fixed(5)),
            ("GET", "/fapi/v3/positionRisk"): r(self._position_risk_v3, True, _fixed(5)),
            ("GET", "/fapi/v2/balance"): r(self._balance, True, _fixed(5)),
            ("GET", "/fapi/v3/balance"): r(self._balance, True, _fixed(5)),
            ("GET", "/fapi/v2/account"): r(self._account, True, _fixed(5)),
            ("GET", "/fapi/v3/account"): r(self._account, True, _fixed(5)),
            ("GET", "/fapi/v1/income"): r(self._income_history, True, _fixed(30)),
            ("POST", "/fapi/v1/leverage"): r(self._change_leverage, True, _fixed(1)),
            ("POST", "/fapi/v1/marginType"): r(self._change_margin_type, True, _fixed(1)),
            ("GET", "/fapi/v1/positionSide/dual"): r(self._get_dual, True, _fixed(30)),
            ("POST", "/fapi/v1/positionSide/dual"): r(self._set_dual, True, _fixed(1)),
            ("GET", "/sapi/v1/account/apiRestrictions"): r(self._api_restrictions, True, _fixed(1)),
        }

    # -- parameter helpers --------------------------------------------------------------------

    @staticmethod
    def _required(params: Mapping[str, str], name: str) -> str:
        value = params.get(name, "")
        if value == "":
            raise ApiError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return value

    def _symbol(self, params: Mapping[str, str], *, required: bool = True) -> str | None:
        value = params.get("symbol", "")
        if value == "":
            if required:
                self._required(params, "symbol")
            return None
        if value.upper() not in self._specs:
            raise ApiError(400, -1121, "Invalid symbol.")
        return value.upper()

    @staticmethod
    def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
        text = params.get(name, "")
        if text == "":
            return None
        if not _DECIMAL_RE.match(text):
            if text.startswith("-") and _DECIMAL_RE.match(text[1:]):
                return Decimal(text)
            raise ApiError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None

    @staticmethod
    def _int(params: Mapping[str, str], name: str) -> int | None:
        text = params.get(name, "")
        if text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise ApiError(400, -1130, f"Data sent for parameter '{name}' is not valid.") from None

    @staticmethod
    def _bool(params: Mapping[str, str], name: str) -> bool:
        text = params.get(name, "").lower()
        if text in ("", "false"):
            return False
        if text == "true":
            return True
        raise ApiError(400, -1130, f"Data sent for parameter '{name}' is not valid.")

    def _limit(self, params: Mapping[str, str], default: int, maximum: int) -> int:
        limit = self._int(params, "limit")
        if limit is None:
            return default
        if limit <= 0:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return min(limit, maximum)

    # -- market data --------------------------------------------------------------------------

    def _exchange_info(self, _request: _Request, now: int) -> Json:
        symbols = []
        for spec in self._specs.values():
            symbols.append(
                {
                    "symbol": spec.symbol,
                    "pair": spec.symbol,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": spec.base_asset,
                    "quoteAsset": "USDT",
                    "marginAsset": "USDT",
                    "pricePrecision": _places(spec.tick_size),
                    "quantityPrecision": _places(spec.step_size),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _s(spec.min_price),
                            "maxPrice": _s(spec.max_price),
                            "tickSize": format(spec.tick_size, "f"),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": format(spec.min_qty, "f"),
                            "maxQty": _s(spec.max_qty),
                            "stepSize": format(spec.step_size, "f"),
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": format(spec.min_qty, "f"),
                            "maxQty": _s(spec.market_max_qty),
                            "stepSize": format(spec.step_size, "f"),
                        },
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": _s(spec.min_notional)},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": [
                        "LIMIT",
                        "MARKET",
                        "STOP",
                        "STOP_MARKET",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_MARKET",
                        "TRAILING_STOP_MARKET",
                    ],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": now,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit or 2400,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 1200,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": 300,
                },
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }

    def _klines(self, request: _Request, now: int) -> Json:
        params = request.params
        symbol = cast(str, self._symbol(params))
        interval = self._required(params, "interval")
        if interval not in _INTERVALS_MS:
            raise ApiError(400, -1120, "Invalid interval.")
        step = _INTERVALS_MS[interval]
        offset = _INTERVAL_OFFSET_MS.get(interval, 0)
        limit = self._limit(params, 500, 1500)
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")

        def bar_open(t: int) -> int:
            return (t - offset) // step * step + offset

        times = self._price_times[symbol]
        values = self._price_values[symbol]
        first = bar_open(times[0])
        current = bar_open(now)
        last = current if self.include_open_kline else current - step
        if end is not None:
            last = min(last, bar_open(end))
        if start is not None:
            lo = max(first, bar_open(start) if bar_open(start) >= start else bar_open(start) + step)
            opens = range(lo, last + 1, step)[:limit]
        else:
            opens = range(max(first, last - (limit - 1) * step), last + 1, step)
        rows: list[list[Any]] = []
        trades = sorted((t for t in self._trades if t.symbol == symbol), key=lambda t: t.time)
        trade_times = [t.time for t in trades]
        for opened in opens:
            closed = opened + step - 1
            i = bisect.bisect_left(times, opened)
            j = bisect.bisect_right(times, closed)
            inside = values[i:j]
            open_price = values[i - 1] if i > 0 else inside[0] if inside else values[0]
            prices = [open_price, *inside]
            volume = quote = taker_base = taker_quote = _ZERO
            first_trade = bisect.bisect_left(trade_times, opened)
            last_trade = bisect.bisect_right(trade_times, closed)
            for trade in trades[first_trade:last_trade]:
                volume += trade.qty
                quote += trade.quote_qty
                if trade.side == "BUY":
                    taker_base += trade.qty
                    taker_quote += trade.quote_qty
            count = last_trade - first_trade
            tick = self._specs[symbol].tick_size
            rows.append(
                [
                    opened,
                    _at(open_price, tick),
                    _at(max(prices), tick),
                    _at(min(prices), tick),
                    _at(prices[-1], tick),
                    _s(volume),
                    closed,
                    _s(quote),
                    count,
                    _s(taker_base),
                    _s(taker_quote),
                    "0",
                ]
            )
        return rows

    def _premium_row(self, symbol: str, now: int) -> Json:
        price = _at(self._prices[symbol], self._specs[symbol].tick_size)
        return {
            "symbol": symbol,
            "markPrice": price,
            "indexPrice": price,
            "estimatedSettlePrice": price,
            "lastFundingRate": format(self._funding_rates[symbol], "f"),
            "interestRate": "0.00010000",
            "nextFundingTime": self._next_funding[symbol],
            "time": now,
        }

    def _premium_index(self, request: _Request, now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        if symbol:
            return self._premium_row(symbol, now)
        return [self._premium_row(s, now) for s in self._specs]

    def _funding_info(self, _request: _Request, _now: int) -> Json:
        return [
            {
                "symbol": spec.symbol,
                "adjustedFundingRateCap": "0.02000000",
                "adjustedFundingRateFloor": "-0.02000000",
                "fundingIntervalHours": spec.funding_interval_hours,
                "disclaimer": False,
            }
            for spec in self._specs.values()
        ]

    def _ticker_price(self, request: _Request, now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        rows = [
            {
                "symbol": s,
                "price": _at(self._prices[s], self._specs[s].tick_size),
                "time": now,
            }
            for s in ([symbol] if symbol else list(self._specs))
        ]
        return rows[0] if symbol else rows

    # -- orders -------------------------------------------------------------------------------

    def _order_json(self, order: Order, *, with_time: bool = True) -> Json:
        spec = self._specs[order.symbol]
        data: dict[str, Any] = {
            "orderId": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "clientOrderId": order.client_order_id,
            "price": _at(order.price, spec.tick_size),
            "avgPrice": _s(order.avg_price) if order.executed_qty else "0.00",
            "origQty": _at(order.orig_qty, spec.step_size),
            "executedQty": _at(order.executed_qty, spec.step_size),
            "cumQty": _at(order.executed_qty, spec.step_size),
            "cumQuote": _s(order.cum_quote),
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": order.position_side,
            "stopPrice": _at(order.stop_price, spec.tick_size),
            "workingType": order.working_type,
            "priceProtect": order.price_protect,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": order.update_time,
        }
        if with_time:
            data["time"] = order.time
        return data

    def _check_client_id(self, value: str | None, name: str) -> None:
        if value is not None and not CLIENT_ORDER_ID_RE.match(value):
            raise ApiError(400, -4015, "Client order id is not valid.")

    def _check_quantity(self, spec: SymbolSpec, qty: Decimal, *, market: bool) -> None:
        if qty <= 0:
            raise ApiError(400, -4003, "Quantity less than or equal to zero.")
        if -int(qty.normalize().as_tuple().exponent) > _places(spec.step_size):
            raise ApiError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise ApiError(400, -4004, "Quantity less than min quantity.")
        if qty > (spec.market_max_qty if market else spec.max_qty):
            raise ApiError(400, -4005, "Quantity greater than max quantity.")
        if (qty - spec.min_qty) % spec.step_size != 0:
            raise ApiError(400, -4023, "Qty not increased by step size.")

    def _check_price(self, spec: SymbolSpec, price: Decimal, name: str = "price") -> None:
        if price <= 0:
            code = -4001 if name == "price" else -4006
            raise ApiError(
                400, code, f"{'Price' if name == 'price' else 'Stop price'} less than 0."
            )
        if -int(price.normalize().as_tuple().exponent) > _places(spec.tick_size):
            raise ApiError(400, -1111, "Precision is over the maximum defined for this asset.")
        if price < spec.min_price:
            raise ApiError(400, -4013, "Price less than min price.")
        if price > spec.max_price:
            code = -4002 if name == "price" else -4007
            raise ApiError(400, code, "Price greater than max price.")
        if (price - spec.min_price) % spec.tick_size != 0:
            raise ApiError(400, -4014, "Price not increased by tick size.")

    def _check_side_and_mode(self, params: Mapping[str, str]) -> tuple[str, str]:
        side = self._required(params, "side").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1117, "Invalid side.")
        position_side = params.get("positionSide", "BOTH").upper() or "BOTH"
        if position_side not in ("BOTH", "LONG", "SHORT"):
            raise ApiError(400, -4060, "Invalid position side.")
        # One-way mode only: positionSide must be BOTH. Hedge mode can be switched on (the
        # setting is kept) but is not simulated, so every order is refused while it is on.
        if position_side != "BOTH" or self._dual_side:
            raise ApiError(400, -4061, "Order's position side does not match user's setting.")
        return side, position_side

    @staticmethod
    def _increase(position: Decimal, side: str, qty: Decimal) -> Decimal:
        """The part of ``qty`` that opens or adds to the position (the rest reduces it)."""
        signed = qty if side == "BUY" else -qty
        if position == 0 or (position > 0) == (signed > 0):
            return qty
        return max(_ZERO, qty - abs(position))

    def _available(self) -> Decimal:
        unrealized = _ZERO
        position_margin = _ZERO
        for symbol, position in self._positions.items():
            mark = self._prices[symbol]
            unrealized += position.amount * (mark - position.entry_price)
            position_margin += abs(position.amount) * mark / self._leverage[symbol]
        order_margin = _ZERO
        for order in self._orders:
            if order.is_open and not order.reduce_only:
                remaining = order.orig_qty - order.executed_qty
                order_margin += remaining * order.price / self._leverage[order.symbol]
        return self._wallet + unrealized - position_margin - order_margin

    def _check_margin(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        increase = self._increase(self._positions[symbol].amount, side, qty)
        if increase <= 0:
            return
        needed = increase * price / self._leverage[symbol] + increase * price * self.taker_fee
        if needed > self._available():
            raise ApiError(400, -2019, "Margin is insufficient.")

    def _new_order(self, request: _Request, now: int) -> Json:
        params = request.params
        symbol = cast(str, self._symbol(params))
        spec = self._specs[symbol]
        side, position_side = self._check_side_and_mode(params)
        order_type = self._required(params, "type").upper()
        if order_type in _CONDITIONAL_TYPES:
            raise ApiError(
                400,
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API "
                "endpoints instead.",
            )
        if order_type not in ("MARKET", "LIMIT"):
            raise ApiError(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId")
        self._check_client_id(client_id, "newClientOrderId")
        reduce_only = self._bool(params, "reduceOnly")
        if self._bool(params, "closePosition"):
            raise ApiError(400, -1106, "Parameter 'closePosition' sent when not required.")
        response_type = params.get("newOrderRespType", "ACK").upper()
        if response_type not in ("ACK", "RESULT"):
            raise ApiError(400, -1136, "Invalid newOrderRespType.")
        qty = self._decimal(params, "quantity")
        if qty is None:
            self._required(params, "quantity")
        qty = cast(Decimal, qty)
        self._check_quantity(spec, qty, market=order_type == "MARKET")
        market = self._prices[symbol]
        if order_type == "LIMIT":
            time_in_force = self._required(params, "timeInForce").upper()
            if time_in_force not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
            price = self._decimal(params, "price")
            if price is None:
                self._required(params, "price")
            price = cast(Decimal, price)
            self._check_price(spec, price)
            reference = price
        else:
            time_in_force = "GTC"
            if params.get("price"):
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            price = _ZERO
            reference = market
        if not reduce_only and qty * reference < spec.min_notional:
            raise ApiError(
                400,
                -4164,
                f"Order's notional must be no smaller than {_s(spec.min_notional)} "
                "(unless you choose reduce only).",
            )
        position = self._positions[symbol].amount
        if reduce_only and self._increase(position, side, qty) == qty:
            raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
        crosses = order_type == "MARKET" or (
            (side == "BUY" and price >= market) or (side == "SELL" and price <= market)
        )
        if order_type == "LIMIT" and time_in_force == "GTX" and crosses:
            raise ApiError(
                400,
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be "
                "rejected.",
            )
        if not reduce_only:
            self._check_margin(symbol, side, qty, market if crosses else price)
        if client_id is not None and client_id in self._open_by_client_id:
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        if client_id is None:
            client_id = f"testsrv-{next(self._tran_ids)}"

        order = Order(
            order_id=next(self._order_ids),
            symbol=symbol,
            client_order_id=client_id,
            side=side,
            type=order_type,
            orig_type=order_type,
            time_in_force=time_in_force,
            orig_qty=qty,
            price=price,
            stop_price=_ZERO,
            reduce_only=reduce_only,
            close_position=False,
            position_side=position_side,
            working_type="CONTRACT_PRICE",
            price_protect=False,
            status="NEW",
            time=now,
            update_time=now,
        )
        self._orders.append(order)
        self._orders_by_id[order.order_id] = order
        self._open_by_client_id[client_id] = order
        self._accepted.append(
            AcceptedOrder(
                seq=len(self._accepted) + 1,
                kind="order",
                order_id=order.order_id,
                client_order_id=client_id,
                symbol=symbol,
                side=side,
                type=order_type,
                quantity=qty,
                price=price if order_type == "LIMIT" else None,
                stop_price=None,
                reduce_only=reduce_only,
                close_position=False,
                time=now,
            )
        )
        acknowledged = self._order_json(order, with_time=False)
        if crosses:
            self._execute_order(order, market, maker=False, now=now)
        elif time_in_force in ("IOC", "FOK"):
            self._close(order, "EXPIRED", now)
        return acknowledged if response_type == "ACK" else self._order_json(order, with_time=False)

    def _find_order(self, params: Mapping[str, str], symbol: str, missing: ApiError) -> Order:
        order_id = self._int(params, "orderId")
        client_id = params.get("origClientOrderId", "")
        if order_id is None and not client_id:
            raise ApiError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        found: Order | None = None
        if order_id is not None:
            found = self._orders_by_id.get(order_id)
            if found is not None and client_id and found.client_order_id != client_id:
                found = None
        else:
            for order in reversed(self._orders):
                if order.client_order_id == client_id:
                    found = order
                    break
        if found is None or found.symbol != symbol:
            raise missing
        return found

    def _query_order(self, request: _Request, _now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        order = self._find_order(
            request.params, symbol, ApiError(400, -2013, "Order does not exist.")
        )
        return self._order_json(order)

    def _cancel_order(self, request: _Request, now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        unknown = ApiError(400, -2011, "Unknown order sent.")
        order = self._find_order(request.params, symbol, unknown)
        if not order.is_open:
            raise unknown
        self._close(order, "CANCELED", now)
        return self._order_json(order, with_time=False)

    def _open_orders(self, request: _Request, _now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        return [
            self._order_json(o) for o in self._orders if o.is_open and symbol in (None, o.symbol)
        ]

    def _all_orders(self, request: _Request, _now: int) -> Json:
        params = request.params
        symbol = cast(str, self._symbol(params))
        order_id = self._int(params, "orderId")
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        limit = self._limit(params, 500, 1000)
        rows = [
            o
            for o in self._orders
            if o.symbol == symbol
            and (order_id is None or o.order_id >= order_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
        ]
        rows = rows[:limit] if order_id is not None or start is not None else rows[-limit:]
        return [self._order_json(o) for o in rows]

    def _cancel_all(self, request: _Request, now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        for order in list(self._orders):
            if order.is_open and order.symbol == symbol:
                self._close(order, "CANCELED", now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _close(self, order: Order, status: str, now: int) -> None:
        order.status = status
        order.update_time = now
        if self._open_by_client_id.get(order.client_order_id) is order:
            del self._open_by_client_id[order.client_order_id]

    # -- algo (conditional) orders ------------------------------------------------------------

    def _algo_json(self, algo: AlgoOrder) -> Json:
        spec = self._specs[algo.symbol]
        return {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": algo.order_type,
            "symbol": algo.symbol,
            "side": algo.side,
            "positionSide": algo.position_side,
            "timeInForce": algo.time_in_force,
            "quantity": _at(algo.quantity, spec.step_size),
            "algoStatus": algo.status,
            "actualOrderId": str(algo.actual_order_id) if algo.actual_order_id else "",
            "actualPrice": _s(algo.actual_price),
            "triggerPrice": _at(algo.trigger_price, spec.tick_size),
            "price": _at(algo.price, spec.tick_size),
            "icebergQuantity": None,
            "tpTriggerPrice": "0.000",
            "tpPrice": "0.000",
            "slTriggerPrice": "0.000",
            "slPrice": "0.000",
            "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": algo.working_type,
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": algo.price_protect,
            "reduceOnly": algo.reduce_only,
            "createTime": algo.create_time,
            "updateTime": algo.update_time,
            "triggerTime": algo.trigger_time,
            "goodTillDate": 0,
        }

    def _new_algo(self, request: _Request, now: int) -> Json:
        params = request.params
        algo_type = self._required(params, "algoType").upper()
        if algo_type != "CONDITIONAL":
            raise ApiError(400, -1130, "Data sent for parameter 'algoType' is not valid.")
        symbol = cast(str, self._symbol(params))
        spec = self._specs[symbol]
        side, position_side = self._check_side_and_mode(params)
        order_type = self._required(params, "type").upper()
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.")
        client_id = params.get("clientAlgoId")
        self._check_client_id(client_id, "clientAlgoId")
        trigger = self._decimal(params, "triggerPrice")
        if trigger is None:
            self._required(params, "triggerPrice")
        trigger = cast(Decimal, trigger)
        self._check_price(spec, trigger, "stopPrice")
        close_position = self._bool(params, "closePosition")
        reduce_only = self._bool(params, "reduceOnly")
        qty = self._decimal(params, "quantity")
        if close_position:
            if qty is not None:
                raise ApiError(400, -4137, "Quantity must be zero with closePosition equals true")
            if reduce_only:
                raise ApiError(400, -1106, "Parameter 'reduceOnly' sent when not required.")
            qty = _ZERO
        else:
            if qty is None:
                self._required(params, "quantity")
            qty = cast(Decimal, qty)
            self._check_quantity(spec, qty, market=True)
            if not reduce_only and qty * trigger < spec.min_notional:
                raise ApiError(
                    400,
                    -4164,
                    f"Order's notional must be no smaller than {_s(spec.min_notional)} "
                    "(unless you choose reduce only).",
                )
        market = self._prices[symbol]
        if self._triggers(order_type, side, trigger, market):
            raise ApiError(400, -2021, "Order would immediately trigger.")
        if client_id is not None and client_id in self._open_algo_by_client_id:
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        if client_id is None:
            client_id = f"testsrv-algo-{next(self._tran_ids)}"
        algo = AlgoOrder(
            algo_id=next(self._algo_ids),
            client_algo_id=client_id,
            symbol=symbol,
            side=side,
            order_type=order_type,
            quantity=qty,
            trigger_price=trigger,
            price=_ZERO,
            reduce_only=reduce_only,
            close_position=close_position,
            position_side=position_side,
            working_type=params.get("workingType", "CONTRACT_PRICE").upper() or "CONTRACT_PRICE",
            price_protect=params.get("priceProtect", "").upper() == "TRUE",
            time_in_force=params.get("timeInForce", "GTC").upper() or "GTC",
            status="NEW",
            create_time=now,
            update_time=now,
        )
        self._algos.append(algo)
        self._algos_by_id[algo.algo_id] = algo
        self._open_algo_by_client_id[client_id] = algo
        self._accepted.append(
            AcceptedOrder(
                seq=len(self._accepted) + 1,
                kind="algo",
                order_id=algo.algo_id,
                client_order_id=client_id,
                symbol=symbol,
                side=side,
                type=order_type,
                quantity=None if close_position else qty,
                price=None,
                stop_price=trigger,
                reduce_only=reduce_only,
                close_position=close_position,
                time=now,
            )
        )
        return self._algo_json(algo)

    @staticmethod
    def _triggers(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
        if order_type == "STOP_MARKET":
            return price >= trigger if side == "BUY" else price <= trigger
        return price <= trigger if side == "BUY" else price >= trigger

    def _find_algo(self, params: Mapping[str, str], missing: ApiError) -> AlgoOrder:
        algo_id = self._int(params, "algoId")
        client_id = params.get("clientAlgoId", "")
        if algo_id is None and not client_id:
            raise ApiError(
                400,
                -1102,
                "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!",
            )
        if algo_id is not None:
            found = self._algos_by_id.get(algo_id)
            if found is not None and (not client_id or found.client_algo_id == client_id):
                return found
            raise missing
        for algo in reversed(self._algos):
            if algo.client_algo_id == client_id:
                return algo
        raise missing

    def _query_algo(self, request: _Request, _now: int) -> Json:
        algo = self._find_algo(request.params, ApiError(400, -2013, "Order does not exist."))
        return self._algo_json(algo)

    def _cancel_algo(self, request: _Request, now: int) -> Json:
        unknown = ApiError(400, -2011, "Unknown order sent.")
        algo = self._find_algo(request.params, unknown)
        if not algo.is_open:
            raise unknown
        self._close_algo(algo, "CANCELED", now)
        return {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "code": "200",
            "msg": "success",
        }

    def _open_algos(self, request: _Request, _now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        return [self._algo_json(a) for a in self._algos if a.is_open and symbol in (None, a.symbol)]

    def _all_algos(self, request: _Request, _now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        limit = self._limit(request.params, 100, 100)
        return [self._algo_json(a) for a in self._algos if a.symbol == symbol][-limit:]

    def _cancel_all_algos(self, request: _Request, now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        for algo in list(self._algos):
            if algo.is_open and algo.symbol == symbol:
                self._close_algo(algo, "CANCELED", now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _close_algo(self, algo: AlgoOrder, status: str, now: int) -> None:
        algo.status = status
        algo.update_time = now
        if self._open_algo_by_client_id.get(algo.client_algo_id) is algo:
            del self._open_algo_by_client_id[algo.client_algo_id]

    # -- matching, fills, money ---------------------------------------------------------------

    def _match(self, symbol: str, now: int) -> None:
        price = self._prices[symbol]
        for order in [o for o in self._orders if o.is_open and o.symbol == symbol]:
            if order.type != "LIMIT":
                continue
            if (order.side == "BUY" and price <= order.price) or (
                order.side == "SELL" and price >= order.price
            ):
                self._execute_order(order, order.price, maker=True, now=now)
        for algo in [a for a in self._algos if a.is_open and a.symbol == symbol]:
            if self._triggers(algo.order_type, algo.side, algo.trigger_price, price):
                self._trigger_algo(algo, price, now)

    def _trigger_algo(self, algo: AlgoOrder, price: Decimal, now: int) -> None:
        position = self._positions[algo.symbol].amount
        algo.trigger_time = now
        if algo.close_position or algo.reduce_only:
            if position == 0 or self._increase(position, algo.side, abs(position)) > 0:
                self._close_algo(algo, "EXPIRED", now)
                return
            qty = abs(position) if algo.close_position else min(algo.quantity, abs(position))
        else:
            qty = algo.quantity
            try:
                self._check_margin(algo.symbol, algo.side, qty, price)
            except ApiError:
                self._close_algo(algo, "REJECTED", now)
                return
        child = Order(
            order_id=next(self._order_ids),
            symbol=algo.symbol,
            client_order_id=algo.client_algo_id,
            side=algo.side,
            type="MARKET",
            orig_type=algo.order_type,
            time_in_force=algo.time_in_force,
            orig_qty=qty,
            price=_ZERO,
            stop_price=algo.trigger_price,
            reduce_only=algo.reduce_only or algo.close_position,
            close_position=algo.close_position,
            position_side=algo.position_side,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
            status="NEW",
            time=now,
            update_time=now,
        )
        self._orders.append(child)
        self._orders_by_id[child.order_id] = child
        self._execute_order(child, price, maker=False, now=now)
        algo.actual_order_id = child.order_id
        algo.actual_price = child.avg_price
        self._close_algo(algo, "FINISHED", now)

    def _execute_order(self, order: Order, price: Decimal, *, maker: bool, now: int) -> None:
        qty = order.orig_qty - order.executed_qty
        if order.reduce_only:
            position = self._positions[order.symbol].amount
            if position == 0 or self._increase(position, order.side, qty) == qty:
                self._close(order, "EXPIRED", now)
                return
            qty = min(qty, abs(position))
        self._fill(order, qty, price, maker=maker, now=now)
        self._close(order, "FILLED" if order.executed_qty == order.orig_qty else "EXPIRED", now)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool, now: int) -> None:
        position = self._positions[order.symbol]
        signed = qty if order.side == "BUY" else -qty
        realized = _ZERO
        amount, entry = position.amount, position.entry_price
        if amount == 0 or (amount > 0) == (signed > 0):
            new_amount = amount + signed
            entry = (abs(amount) * entry + qty * price) / abs(new_amount)
            amount = new_amount
        else:
            closing = min(qty, abs(amount))
            direction = 1 if amount > 0 else -1
            realized = closing * (price - entry) * direction
            amount += signed
            if amount == 0:
                entry = _ZERO
            elif (amount > 0) != (direction > 0):  # flipped: the rest opens at the fill price
                entry = price
        position.amount, position.entry_price, position.update_time = amount, entry, now
        quote = qty * price
        fee = quote * (self.maker_fee if maker else self.taker_fee)
        self._wallet += realized - fee
        order.executed_qty += qty
        order.cum_quote += quote
        order.update_time = now
        trade = Trade(
            id=next(self._trade_ids),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote,
            commission=fee,
            commission_asset="USDT",
            realized_pnl=realized,
            maker=maker,
            time=now,
        )
        self._trades.append(trade)
        if realized:
            self._add_income(order.symbol, "REALIZED_PNL", realized, "", now, str(trade.id))
        if fee:
            self._add_income(order.symbol, "COMMISSION", -fee, "", now, str(trade.id))

    def _add_income(
        self, symbol: str, kind: str, amount: Decimal, info: str, now: int, trade_id: str
    ) -> None:
        self._income.append(
            Income(
                tran_id=next(self._tran_ids),
                symbol=symbol,
                income_type=kind,
                income=amount,
                asset="USDT",
                info=info,
                time=now,
                trade_id=trade_id,
            )
        )

    def _apply_funding(self, symbol: str, rate: Decimal, at: int | None = None) -> Decimal:
        position = self._positions[symbol]
        when = self._clock() if at is None else at
        if position.amount == 0:
            return _ZERO
        payment = -position.amount * self._prices[symbol] * rate
        self._wallet += payment
        self._add_income(symbol, "FUNDING_FEE", payment, "FUNDING_FEE", when, "")
        return payment

    def _settle_funding(self, now: int) -> None:
        for symbol, spec in self._specs.items():
            interval = spec.funding_interval_hours * _HOUR_MS
            while now >= self._next_funding[symbol]:
                at = self._next_funding[symbol]
                self._apply_funding(symbol, self._funding_rates[symbol], at)
                self._next_funding[symbol] = at + interval

    # -- account endpoints --------------------------------------------------------------------

    def _position_row(self, symbol: str, now: int, *, v2: bool) -> Json:
        position = self._positions[symbol]
        spec = self._specs[symbol]
        mark = self._prices[symbol]
        unrealized = position.amount * (mark - position.entry_price)
        notional = position.amount * mark
        margin = abs(notional) / self._leverage[symbol]
        row: dict[str, Any] = {
            "symbol": symbol,
            "positionSide": "BOTH",
            "positionAmt": _at(position.amount, spec.step_size),
            "entryPrice": _s(position.entry_price),
            "breakEvenPrice": _s(position.entry_price),
            "markPrice": _s(mark),
            "unRealizedProfit": _s(unrealized),
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": _s(notional),
            "marginAsset": "USDT",
            "isolatedWallet": "0",
            "initialMargin": _s(margin),
            "maintMargin": _s(abs(notional) * Decimal("0.004")),
            "positionInitialMargin": _s(margin),
            "openOrderInitialMargin": "0",
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": position.update_time,
        }
        if v2:
            row.update(
                {
                    "leverage": str(self._leverage[symbol]),
                    "marginType": self._margin_type[symbol].lower().replace("crossed", "cross"),
                    "isAutoAddMargin": "false",
                    "maxNotionalValue": "1000000",
                }
            )
        return row

    def _position_risk_v2(self, request: _Request, now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        return [self._position_row(s, now, v2=True) for s in ([symbol] if symbol else self._specs)]

    def _position_risk_v3(self, request: _Request, now: int) -> Json:
        symbol = self._symbol(request.params, required=False)
        wanted = [symbol] if symbol else list(self._specs)
        return [
            self._position_row(s, now, v2=False)
            for s in wanted
            if self._positions[s].amount != 0
            or any(o.is_open and o.symbol == s for o in self._orders)
        ]

    def _totals(self) -> dict[str, Decimal]:
        unrealized = sum(
            (p.amount * (self._prices[s] - p.entry_price) for s, p in self._positions.items()),
            _ZERO,
        )
        position_margin = sum(
            (
                abs(p.amount) * self._prices[s] / self._leverage[s]
                for s, p in self._positions.items()
            ),
            _ZERO,
        )
        available = self._available()
        return {
            "wallet": self._wallet,
            "unrealized": unrealized,
            "margin_balance": self._wallet + unrealized,
            "position_margin": position_margin,
            "order_margin": self._wallet + unrealized - position_margin - available,
            "available": available,
        }

    def _balance(self, _request: _Request, now: int) -> Json:
        t = self._totals()
        return [
            {
                "accountAlias": "SgsR",
                "asset": "USDT",
                "balance": _s(t["wallet"]),
                "crossWalletBalance": _s(t["wallet"]),
                "crossUnPnl": _s(t["unrealized"]),
                "availableBalance": _s(t["available"]),
                "maxWithdrawAmount": _s(max(_ZERO, min(t["available"], t["wallet"]))),
                "marginAvailable": True,
                "updateTime": now,
            }
        ]

    def _api_restrictions(self, _request: _Request, now: int) -> Json:
        return {
            "ipRestrict": False,
            "createTime": now,
            "enableReading": True,
            "enableFutures": True,
            "enableWithdrawals": self.enable_withdrawals,
            "enableInternalTransfer": False,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableMargin": False,
            "enableSpotAndMarginTrading": False,
        }

    def _account(self, _request: _Request, now: int) -> Json:
        t = self._totals()
        initial = t["position_margin"] + t["order_margin"]
        asset = {
            "asset": "USDT",
            "walletBalance": _s(t["wallet"]),
            "unrealizedProfit": _s(t["unrealized"]),
            "marginBalance": _s(t["margin_balance"]),
            "maintMargin": "0",
            "initialMargin": _s(initial),
            "positionInitialMargin": _s(t["position_margin"]),
            "openOrderInitialMargin": _s(t["order_margin"]),
            "crossWalletBalance": _s(t["wallet"]),
            "crossUnPnl": _s(t["unrealized"]),
            "availableBalance": _s(t["available"]),
            "maxWithdrawAmount": _s(max(_ZERO, min(t["available"], t["wallet"]))),
            "marginAvailable": True,
            "updateTime": now,
        }
        positions = []
        for symbol, position in self._positions.items():
            row = self._position_row(symbol, now, v2=True)
            positions.append(
                {
                    "symbol": symbol,
                    "positionSide": "BOTH",
                    "positionAmt": row["positionAmt"],
                    "unrealizedProfit": row["unRealizedProfit"],
                    "isolatedMargin": "0",
                    "notional": row["notional"],
                    "isolatedWallet": "0",
                    "initialMargin": row["initialMargin"],
                    "maintMargin": row["maintMargin"],
                    "positionInitialMargin": row["positionInitialMargin"],
                    "openOrderInitialMargin": "0",
                    "leverage": row["leverage"],
                    "isolated": False,
                    "entryPrice": row["entryPrice"],
                    "breakEvenPrice": row["breakEvenPrice"],
                    "maxNotional": "1000000",
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": position.update_time,
                }
            )
        return {
            "feeTier": 0,
            "feeBurn": False,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
            "totalInitialMargin": _s(initial),
            "totalMaintMargin": "0",
            "totalWalletBalance": _s(t["wallet"]),
            "totalUnrealizedProfit": _s(t["unrealized"]),
            "totalMarginBalance": _s(t["margin_balance"]),
            "totalPositionInitialMargin": _s(t["position_margin"]),
            "totalOpenOrderInitialMargin": _s(t["order_margin"]),
            "totalCrossWalletBalance": _s(t["wallet"]),
            "totalCrossUnPnl": _s(t["unrealized"]),
            "availableBalance": _s(t["available"]),
            "maxWithdrawAmount": _s(max(_ZERO, min(t["available"], t["wallet"]))),
            "assets": [asset],
            "positions": positions,
        }

    def _user_trades(self, request: _Request, _now: int) -> Json:
        params = request.params
        symbol = cast(str, self._symbol(params))
        order_id = self._int(params, "orderId")
        from_id = self._int(params, "fromId")
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        limit = self._limit(params, 500, 1000)
        spec = self._specs[symbol]
        rows = [
            t
            for t in self._trades
            if t.symbol == symbol
            and (order_id is None or t.order_id == order_id)
            and (from_id is None or t.id >= from_id)
            and (start is None or t.time >= start)
            and (end is None or t.time <= end)
        ]
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
        return [
            {
                "buyer": t.side == "BUY",
                "commission": _s(t.commission),
                "commissionAsset": t.commission_asset,
                "id": t.id,
                "maker": t.maker,
                "orderId": t.order_id,
                "price": _at(t.price, spec.tick_size),
                "qty": _at(t.qty, spec.step_size),
                "quoteQty": _s(t.quote_qty),
                "realizedPnl": _s(t.realized_pnl),
                "side": t.side,
                "positionSide": "BOTH",
                "symbol": t.symbol,
                "time": t.time,
            }
            for t in rows
        ]

    def _income_history(self, request: _Request, _now: int) -> Json:
        params = request.params
        symbol = self._symbol(params, required=False)
        kind = params.get("incomeType", "").upper()
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        limit = self._limit(params, 100, 1000)
        rows = [
            i
            for i in self._income
            if (symbol is None or i.symbol == symbol)
            and (not kind or i.income_type == kind)
            and (start is None or i.time >= start)
            and (end is None or i.time <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [
            {
                "symbol": i.symbol,
                "incomeType": i.income_type,
                "income": _s(i.income),
                "asset": i.asset,
                "info": i.info,
                "time": i.time,
                "tranId": i.tran_id,
                "tradeId": i.trade_id,
            }
            for i in rows
        ]

    def _change_leverage(self, request: _Request, _now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        leverage = self._int(request.params, "leverage")
        if leverage is None:
            self._required(request.params, "leverage")
        leverage = cast(int, leverage)
        if leverage < 1 or leverage > self._specs[symbol].max_leverage:
            raise ApiError(400, -4028, f"Leverage {leverage} is not valid")
        self._leverage[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}

    def _change_margin_type(self, request: _Request, _now: int) -> Json:
        symbol = cast(str, self._symbol(request.params))
        wanted = self._required(request.params, "marginType").upper()
        if wanted not in ("ISOLATED", "CROSSED"):
            raise ApiError(400, -1130, "Data sent for parameter 'marginType' is not valid.")
        if self._margin_type[symbol] == wanted:
            raise ApiError(400, -4046, "No need to change margin type.")
        if any(o.is_open and o.symbol == symbol for o in self._orders):
            raise ApiError(400, -4047, "Margin type cannot be changed if there exists open orders.")
        if self._positions[symbol].amount != 0:
            raise ApiError(400, -4048, "Margin type cannot be changed if there exists position.")
        self._margin_type[symbol] = wanted
        return {"code": 200, "msg": "success"}

    def _get_dual(self, _request: _Request, _now: int) -> Json:
        return {"dualSidePosition": self._dual_side}

    def _set_dual(self, request: _Request, _now: int) -> Json:
        wanted = self._bool(request.params, "dualSidePosition")
        self._required(request.params, "dualSidePosition")
        if wanted == self._dual_side:
            raise ApiError(400, -4059, "No need to change position side.")
        if any(o.is_open for o in self._orders):
            raise ApiError(
                400, -4067, "Position side cannot be changed if there exists open orders."
            )
        if any(p.amount != 0 for p in self._positions.values()):
            raise ApiError(400, -4068, "Position side cannot be changed if there exists position.")
        self._dual_side = wanted
        return {"code": 200, "msg": "success"}
