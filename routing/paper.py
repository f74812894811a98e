"""The paper venue: Binance USD-M futures simulated in-process, the default venue (SPEC §6).

Market data comes from a seeded ``SyntheticMarket`` (one step every ``step_seconds``) or, in
replay, from given bars. Time is the injected clock's: every venue call first moves the market
up to "now" (``advance``): steps strictly before now are applied, closing one-minute bars,
triggering resting orders the path crossed and settling funding at each symbol's interval.

Decisions use closed bars only, so a MARKET order never fills at a price its decision could
have seen: the venue takes one more step (the first price after the decision; in replay, the
next bar's open) and fills there, worse by ``slippage_bps``. Positions and the wallet are kept
with ``routing.accounting``'s arithmetic, so they agree with the books the executor keeps.

The whole book (orders, trades, funding, positions, the market's random state and bars) is one
JSON document in ``PaperAccount``: executor ticks run in different worker processes and must
continue the same account, and the same price path, after a restart. ``save()`` is optimistic:
it fails with ``PaperBookConflict`` if another process saved since this one loaded.

Errors are Binance's: the venue raises ``VenueRejected`` with Binance's codes and messages, and
``OrderNotFound`` (-2013) for a query of an order it never accepted.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from risk.limits import Side
from routing.accounting import (
    FLAT,
    Ledger,
    PositionState,
    fill_applied,
    funding_applied,
    unrealized_pnl,
)
from routing.filters import SymbolFilters
from routing.models import PaperAccount
from routing.resilience import OrderNotFound, VenueRejected
from routing.synthetic import GarchParams, SyntheticMarket
from routing.venues import (
    VenueBar,
    VenueIncome,
    VenueOrder,
    VenueOrderState,
    VenueStatus,
    VenueTrade,
)
from tradingsite.decimals import quantize

ZERO = Decimal(0)
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
SCHEMA = 1
ORDER_TYPES = ("MARKET", "LIMIT", "STOP_MARKET")
OPEN_STATUSES = frozenset({VenueStatus.NEW, VenueStatus.PARTIALLY_FILLED})
# Fees are exact products (the accounting's exact sums trap any rounding).
_WIDE = Context(prec=80)

# Kline intervals in minutes (Binance's names); the venue aggregates its base bars into them.
INTERVAL_MINUTES = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}


class PaperBookConflict(Exception):
    """Another process saved this paper account after this one loaded it."""


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperSymbol:
    start_price: Decimal
    tick_size: Decimal
    step_size: Decimal
    funding_interval_hours: int = 8
    funding_rate: Decimal | None = None  # per settlement; None: the venue's ``funding_rate``
    min_notional: Decimal = Decimal("5")  # USDT, for orders that are not reduce-only
    max_qty: Decimal = Decimal("1000000")

    def __post_init__(self) -> None:
        if self.start_price <= 0 or self.tick_size <= 0 or self.step_size <= 0:
            raise ValueError("start price, tick size and step size must be > 0")
        if self.min_notional < 0 or self.max_qty < self.step_size:
            raise ValueError("min notional must be >= 0 and max qty at least one step")
        if self.funding_interval_hours <= 0:
            raise ValueError("the funding interval must be at least one hour")


@dataclass(frozen=True)
class PaperConfig:
    symbols: Mapping[str, PaperSymbol]
    seed: int = 0
    taker_fee: Decimal = Decimal("0.0005")  # fraction of notional (Binance's regular tier)
    maker_fee: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal("2")
    leverage: Decimal = Decimal("5")
    starting_wallet: Decimal = Decimal("10000")  # USDT
    funding_rate: Decimal = Decimal("0.0001")  # per settlement: longs pay when positive
    step_seconds: int = 5  # one synthetic price step every this many seconds
    bar_history: int = 1500  # closed base bars kept per symbol
    # The synthetic market's weak trend (``GarchParams.momentum``): 0 is a pure random walk.
    market_momentum: float = 0.0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("the paper venue needs at least one symbol")
        if self.step_seconds <= 0 or MINUTE_MS % (self.step_seconds * 1000) != 0:
            raise ValueError("step_seconds must divide a minute")
        if self.leverage <= 0 or self.starting_wallet < 0:
            raise ValueError("leverage must be > 0 and the starting wallet >= 0")
        if min(self.taker_fee, self.maker_fee, self.slippage_bps) < 0:
            raise ValueError("fees and slippage must be >= 0")
        if self.bar_history < 1:
            raise ValueError("bar_history must be at least 1")

    @property
    def step_ms(self) -> int:
        return self.step_seconds * 1000

    def rate(self, symbol: str) -> Decimal:
        own = self.symbols[symbol].funding_rate
        return self.funding_rate if own is None else own


# Defaults close to Binance's own filters for the usual symbols; anything else gets a generic one.
DEFAULT_SYMBOLS = {
    "BTCUSDT": PaperSymbol(
        Decimal("60000"), Decimal("0.1"), Decimal("0.001"), min_notional=Decimal("100")
    ),
    "ETHUSDT": PaperSymbol(
        Decimal("3000"), Decimal("0.01"), Decimal("0.001"), min_notional=Decimal("20")
    ),
    "BNBUSDT": PaperSymbol(Decimal("600"), Decimal("0.01"), Decimal("0.01")),
    "SOLUSDT": PaperSymbol(Decimal("150"), Decimal("0.01"), Decimal("0.01")),
    "XRPUSDT": PaperSymbol(Decimal("0.6"), Decimal("0.0001"), Decimal("0.1")),
}
GENERIC_SYMBOL = PaperSymbol(Decimal("100"), Decimal("0.01"), Decimal("0.01"))


def paper_config_for(
    symbols: Sequence[str],
    *,
    seed: int,
    overrides: Mapping[str, PaperSymbol] | None = None,
    **settings: Any,
) -> PaperConfig:
    """A ``PaperConfig`` for ``symbols`` with the defaults above; ``settings`` are the global
    fields (``taker_fee=``, ``slippage_bps=`` ...), ``overrides`` per-symbol replacements."""
    chosen = {**DEFAULT_SYMBOLS, **(overrides or {})}
    return PaperConfig(
        symbols={symbol: chosen.get(symbol, GENERIC_SYMBOL) for symbol in symbols},
        seed=seed,
        **settings,
    )


def paper_venue_for(
    symbols: Sequence[str],
    *,
    seed: int,
    clock_ms: Callable[[], int],
    name: str = "default",
    overrides: Mapping[str, PaperSymbol] | None = None,
    **settings: Any,
) -> PaperVenue:
    """A fresh paper account (not yet saved) for ``symbols``; ``PaperVenue.load`` continues a
    saved one."""
    config = paper_config_for(symbols, seed=seed, overrides=overrides, **settings)
    return PaperVenue(name=name, config=config, clock_ms=clock_ms)


# --- values the venue reports beyond the protocol ---------------------------------------------


@dataclass(frozen=True)
class FundingPayment:
    """One funding settlement (Binance's ``FUNDING_FEE`` income): received > 0, paid < 0."""

    symbol: str
    time_ms: int
    rate: Decimal
    mark_price: Decimal
    amount: Decimal


# --- price sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    time_ms: int
    price: Decimal
    bar: VenueBar | None = None  # replay: the given bar this step closes


class _PriceSource(Protocol):
    bar_ms: int

    def start(self, symbol: str, *, now_ms: int) -> _Step:
        """Where a fresh account's market starts (no step taken yet)."""
        ...

    def steps(self, symbol: str, *, after_ms: int, before_ms: int) -> list[_Step]:
        """The steps with ``after_ms < time < before_ms``, oldest first."""
        ...

    def next_step(self, symbol: str, *, after_ms: int) -> _Step | None: ...

    def state(self) -> dict[str, Any] | None: ...

    def restore(self, state: dict[str, Any] | None) -> None: ...


class _SyntheticSource:
    """Steps on a grid of ``step_ms`` from the seeded GARCH market."""

    bar_ms = MINUTE_MS

    def __init__(self, config: PaperConfig) -> None:
        self._step_ms = config.step_ms
        self._market = SyntheticMarket(
            prices={symbol: spec.start_price for symbol, spec in config.symbols.items()},
            tick_sizes={symbol: spec.tick_size for symbol, spec in config.symbols.items()},
            seed=config.seed,
            params=GarchParams(momentum=config.market_momentum),
        )

    def start(self, symbol: str, *, now_ms: int) -> _Step:
        return _Step(now_ms - now_ms % self._step_ms, self._market.price(symbol))

    def steps(self, symbol: str, *, after_ms: int, before_ms: int) -> list[_Step]:
        count = (before_ms - after_ms - 1) // self._step_ms
        if count <= 0:
            return []
        prices = self._market.path(symbol, steps=count)
        return [_Step(after_ms + (n + 1) * self._step_ms, price) for n, price in enumerate(prices)]

    def next_step(self, symbol: str, *, after_ms: int) -> _Step | None:
        return _Step(after_ms + self._step_ms, self._market.path(symbol, steps=1)[0])

    def state(self) -> dict[str, Any] | None:
        return self._market.state()

    def restore(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self._market.restore(state)


class _ReplaySource:
    """Steps from given bars: each bar is walked open → low → high → close when it rose (high
    first when it fell), so stops see the bar's whole range, and a market order placed after a
    bar closes meets the next bar's open first. The open step is at the bar's open time, so a
    replay driver sets the clock to ``close_time_ms + 1`` to decide on a just-closed bar."""

    bar_ms: int

    def __init__(self, bars: Mapping[str, Sequence[VenueBar]]) -> None:
        self._points: dict[str, list[_Step]] = {}
        self._times: dict[str, list[int]] = {}
        lengths = {bar.close_time_ms - bar.open_time_ms + 1 for seq in bars.values() for bar in seq}
        if len(lengths) != 1 or not all(bars.values()):
            raise ValueError("replay needs bars of one interval, at least one per symbol")
        self.bar_ms = lengths.pop()
        for symbol, seq in bars.items():
            points: list[_Step] = []
            for bar in sorted(seq, key=lambda b: b.open_time_ms):
                first, second = (
                    (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
                )
                third = self.bar_ms // 3
                points += [
                    _Step(bar.open_time_ms, bar.open),
                    _Step(bar.open_time_ms + third, first),
                    _Step(bar.open_time_ms + 2 * third, second),
                    _Step(bar.close_time_ms, bar.close, bar),
                ]
            self._points[symbol] = points
            self._times[symbol] = [point.time_ms for point in points]

    def start(self, symbol: str, *, now_ms: int) -> _Step:
        first = self._points[symbol][0]
        return _Step(first.time_ms - 1, first.price)

    def steps(self, symbol: str, *, after_ms: int, before_ms: int) -> list[_Step]:
        times = self._times[symbol]
        low = bisect.bisect_right(times, after_ms)
        high = bisect.bisect_left(times, before_ms)
        return self._points[symbol][low:high]

    def next_step(self, symbol: str, *, after_ms: int) -> _Step | None:
        index = bisect.bisect_right(self._times[symbol], after_ms)
        points = self._points[symbol]
        return points[index] if index < len(points) else None

    def state(self) -> dict[str, Any] | None:
        return None  # the bars are the caller's; the position in them is each tape's time

    def restore(self, state: dict[str, Any] | None) -> None:
        return None


# --- the book ---------------------------------------------------------------------------------


@dataclass
class _Order:
    venue_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    time_ms: int
    status: VenueStatus = VenueStatus.NEW
    executed_quantity: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def state(self) -> VenueOrderState:
        average = (
            quantize(self.cum_quote / self.executed_quantity) if self.executed_quantity else ZERO
        )
        return VenueOrderState(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            symbol=self.symbol,
            status=self.status,
            executed_quantity=self.executed_quantity,
            average_price=average,
        )


@dataclass
class _OpenBar:
    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    steps: int = 1
    given: VenueBar | None = None


@dataclass
class _Tape:
    """One symbol's market as the venue has seen it so far."""

    price: Decimal
    last_step_ms: int
    next_funding_ms: int
    bar: _OpenBar | None = None
    bars: list[VenueBar] = field(default_factory=list)
    # The decision time of the order that took the last step (its price is that moment's
    # first price after the decision); not saved: a moment never spans two sessions.
    taken_for_ms: int | None = None


def _increase(position: Decimal, side: Side, quantity: Decimal) -> Decimal:
    """The part of ``quantity`` that opens or adds to the position (the rest reduces it)."""
    signed = quantity if side is Side.BUY else -quantity
    if position == 0 or (position > 0) == (signed > 0):
        return quantity
    return max(ZERO, quantity - abs(position))


class PaperVenue:
    """The ``Venue`` protocol in-process, one-way mode, USDT-margined."""

    def __init__(
        self,
        *,
        name: str,
        config: PaperConfig,
        clock_ms: Callable[[], int],
        replay_bars: Mapping[str, Sequence[VenueBar]] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock_ms = clock_ms
        if replay_bars is not None and (missing := set(config.symbols) - set(replay_bars)):
            raise ValueError(f"replay needs bars for every symbol; missing {sorted(missing)}")
        self._source: _PriceSource = (
            _SyntheticSource(config) if replay_bars is None else _ReplaySource(replay_bars)
        )
        self._version = 0  # 0: never saved
        self._orders: dict[str, _Order] = {}  # every order ever accepted, by venue order id
        self._latest_by_client_id: dict[str, str] = {}
        self._open_by_client_id: dict[str, str] = {}
        self._trades: list[VenueTrade] = []
        self._funding: list[FundingPayment] = []
        self._positions: dict[str, PositionState] = {}
        self._start_balance = config.starting_wallet  # a saved book keeps its own
        self._next_order_id = 1
        self._next_trade_id = 1
        now = clock_ms()
        self._tapes: dict[str, _Tape] = {}
        for symbol in config.symbols:
            self._tapes[symbol] = self._fresh_tape(symbol, now_ms=now)

    def _fresh_tape(self, symbol: str, *, now_ms: int) -> _Tape:
        start = self._source.start(symbol, now_ms=now_ms)
        interval = self._funding_interval_ms(symbol)
        return _Tape(
            price=start.price,
            last_step_ms=start.time_ms,
            next_funding_ms=(start.time_ms // interval + 1) * interval,
        )

    def _funding_interval_ms(self, symbol: str) -> int:
        return self.config.symbols[symbol].funding_interval_hours * HOUR_MS

    # --- persistence ----------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        name: str,
        config: PaperConfig,
        clock_ms: Callable[[], int],
        replay_bars: Mapping[str, Sequence[VenueBar]] | None = None,
    ) -> PaperVenue:
        """The saved account ``name``, or a fresh one if it was never saved. The book comes from
        the database; fees, slippage and the other settings from ``config``."""
        venue = cls(name=name, config=config, clock_ms=clock_ms, replay_bars=replay_bars)
        account = PaperAccount.objects.filter(name=name).first()
        if account is not None:
            venue._restore(account.state)
            venue._version = account.version
        return venue

    @property
    def version(self) -> int:
        """The ``PaperAccount.version`` this book was loaded at or last saved as (0: never)."""
        return self._version

    def save(self) -> None:
        """Write the book if nobody else has since it was loaded, else ``PaperBookConflict``."""
        state = self._snapshot()
        if self._version == 0:
            try:
                # Its own savepoint: a lost race must not break the caller's transaction.
                with transaction.atomic():
                    PaperAccount.objects.create(name=self.name, state=state, version=1)
            except IntegrityError as error:
                raise PaperBookConflict(f"paper account {self.name!r} already exists") from error
            self._version = 1
            return
        # Compare-and-set on the version: no lock is held between load and save.
        written = PaperAccount.objects.filter(name=self.name, version=self._version).update(
            state=state, version=F("version") + 1, updated_at=timezone.now()
        )
        if written != 1:
            raise PaperBookConflict(
                f"paper account {self.name!r} changed since version {self._version} was loaded"
            )
        self._version += 1

    # --- the Venue protocol ---------------------------------------------------------------

    def exchange_filters(self) -> dict[str, SymbolFilters]:
        return {
            symbol: SymbolFilters(
                symbol=symbol,
                tick_size=spec.tick_size,
                step_size=spec.step_size,
                min_qty=spec.step_size,
                max_qty=spec.max_qty,
                market_step_size=spec.step_size,
                market_min_qty=spec.step_size,
                market_max_qty=spec.max_qty,
                min_notional=spec.min_notional,
            )
            for symbol, spec in self.config.symbols.items()
            if symbol in self._tapes
        }

    def submit(self, order: VenueOrder) -> VenueOrderState:
        now = self._sync()
        spec = self._spec(order.symbol)
        self._validate(order, spec)
        tape = self._tapes[order.symbol]
        held = self._positions.get(order.symbol, FLAT).quantity
        # Conditional orders are checked when they trigger, as Binance's algo orders are.
        only_increases = _increase(held, order.side, order.quantity) == order.quantity
        if order.reduce_only and order.type != "STOP_MARKET" and only_increases:
            raise VenueRejected(-2022, "ReduceOnly Order is rejected.")
        if order.type == "STOP_MARKET":
            assert order.stop_price is not None
            if self._stop_triggered(order.side, order.stop_price, tape.price):
                raise VenueRejected(-2021, "Order would immediately trigger.")
        crosses = order.type == "MARKET" or (
            order.type == "LIMIT" and self._limit_reached(order.side, order.price, tape.price)
        )
        valued_at = order.price or order.stop_price or tape.price
        if not order.reduce_only and order.quantity * valued_at < spec.min_notional:
            raise VenueRejected(
                -4164,
                f"Order's notional must be no smaller than {spec.min_notional} "
                "(unless you choose reduce only).",
            )
        if not order.reduce_only and order.type != "STOP_MARKET":
            reference = tape.price if crosses or order.price is None else order.price
            self._check_margin(order.symbol, order.side, order.quantity, reference)
        if order.client_order_id in self._open_by_client_id:
            raise VenueRejected(-4116, "ClientOrderId is duplicated.")
        venue_id = str(self._next_order_id)
        self._next_order_id += 1
        client_id = order.client_order_id or f"paper-{venue_id}"
        placed = _Order(
            venue_order_id=venue_id,
            client_order_id=client_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            quantity=order.quantity,
            price=order.price,
            stop_price=order.stop_price,
            reduce_only=order.reduce_only,
            time_ms=now,
            update_ms=now,
        )
        self._orders[placed.venue_order_id] = placed
        self._latest_by_client_id[client_id] = placed.venue_order_id
        self._open_by_client_id[client_id] = placed.venue_order_id
        if crosses:
            self._take(placed)
        return placed.state()

    def query(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        self._sync()
        found = self._find(symbol, client_order_id)
        if found is None:
            raise OrderNotFound(-2013, "Order does not exist.")
        return found.state()

    def cancel(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        now = self._sync()
        found = self._find(symbol, client_order_id)
        if found is None or not found.is_open:
            raise VenueRejected(-2011, "Unknown order sent.")
        self._close(found, VenueStatus.CANCELED, now)
        return found.state()

    def open_orders(self) -> list[VenueOrderState]:
        self._sync()
        return [self._orders[venue_id].state() for venue_id in self._open_ids()]

    def trades(self, *, symbol: str, since_ms: int) -> list[VenueTrade]:
        self._sync()
        return [t for t in self._trades if t.symbol == symbol and t.time_ms >= since_ms]

    def closed_bars(self, *, symbol: str, interval: str, since_ms: int) -> list[VenueBar]:
        now = self._sync()
        self._spec(symbol)
        minutes = INTERVAL_MINUTES.get(interval)
        base = self._source.bar_ms
        if minutes is None or (minutes * MINUTE_MS) % base != 0:
            raise VenueRejected(-1120, "Invalid interval.")
        bars = self._tapes[symbol].bars
        if minutes * MINUTE_MS != base:
            bars = _aggregated(bars, base_ms=base, interval_ms=minutes * MINUTE_MS)
        return [b for b in bars if b.open_time_ms >= since_ms and b.close_time_ms < now]

    def mark_prices(self) -> dict[str, Decimal]:
        self._sync()
        return {symbol: tape.price for symbol, tape in self._tapes.items()}

    def positions(self) -> dict[str, Decimal]:
        self._sync()
        return {s: p.quantity for s, p in sorted(self._positions.items()) if p.quantity != 0}

    def income(self, *, since_ms: int) -> list[VenueIncome]:
        """The paper account's funding settlements (it has no transfers)."""
        self._sync()
        return [
            VenueIncome(
                income_id=f"FUNDING_FEE:{f.time_ms}:{f.symbol}",
                kind="FUNDING_FEE",
                symbol=f.symbol,
                amount=f.amount,
                time_ms=f.time_ms,
            )
            for f in sorted(self._funding, key=lambda payment: payment.time_ms)
            if f.time_ms >= since_ms
        ]

    def account_prepare(self, *, symbols: Iterable[str], leverage: int) -> None:
        """The paper account is always one-way and cross margined; its leverage is the
        configured one (``PaperConfig.leverage``), so nothing is set here."""

    def wallet_balance(self) -> Decimal:
        self._sync()
        return self._ledger().wallet_balance

    # --- beyond the protocol --------------------------------------------------------------

    def position_states(self) -> dict[str, PositionState]:
        """The full ``PositionState`` per symbol ever traded (entry, realised, fees, funding)."""
        self._sync()
        return dict(sorted(self._positions.items()))

    def funding_payments(self, *, symbol: str, since_ms: int) -> list[FundingPayment]:
        self._sync()
        return [f for f in self._funding if f.symbol == symbol and f.time_ms >= since_ms]

    def unrealized_pnl(self) -> Decimal:
        self._sync()
        return self._unrealized()

    def advance(self, now_ms: int) -> None:
        """Move every symbol's market up to ``now_ms``: apply the steps before it (bars close,
        resting orders trigger, funding settles). Never moves backwards."""
        for symbol, tape in self._tapes.items():
            for step in self._source.steps(symbol, after_ms=tape.last_step_ms, before_ms=now_ms):
                self._apply_step(symbol, step)
            self._settle_funding(symbol, before_ms=now_ms)
            if tape.bar is not None and now_ms >= tape.bar.open_time_ms + self._source.bar_ms:
                self._close_bar(tape)

    # --- internals ------------------------------------------------------------------------

    def _sync(self) -> int:
        now = self._clock_ms()
        self.advance(now)
        return now

    def _spec(self, symbol: str) -> PaperSymbol:
        spec = self.config.symbols.get(symbol)
        if spec is None or symbol not in self._tapes:
            raise VenueRejected(-1121, "Invalid symbol.")
        return spec

    @staticmethod
    def _validate(order: VenueOrder, spec: PaperSymbol) -> None:
        if order.type not in ORDER_TYPES:
            raise VenueRejected(-1116, "Invalid orderType.")
        if order.quantity <= 0 or order.quantity % spec.step_size != 0:
            raise VenueRejected(-1111, "Precision is over the maximum defined for this asset.")
        if order.quantity > spec.max_qty:
            raise VenueRejected(-4005, "Quantity greater than max quantity.")
        if order.type == "LIMIT" and order.price is None:
            raise VenueRejected(-1102, "Mandatory parameter 'price' was not sent.")
        if order.type == "STOP_MARKET" and order.stop_price is None:
            raise VenueRejected(-1102, "Mandatory parameter 'stopPrice' was not sent.")
        if order.type != "LIMIT" and order.price is not None:
            raise VenueRejected(-1106, "Parameter 'price' sent when not required.")
        if order.type != "STOP_MARKET" and order.stop_price is not None:
            raise VenueRejected(-1106, "Parameter 'stopPrice' sent when not required.")
        for price in (order.price, order.stop_price):
            if price is not None and (price <= 0 or price % spec.tick_size != 0):
                raise VenueRejected(-4014, "Price not increased by tick size.")

    @staticmethod
    def _stop_triggered(side: Side, stop_price: Decimal, price: Decimal) -> bool:
        return price >= stop_price if side is Side.BUY else price <= stop_price

    @staticmethod
    def _limit_reached(side: Side, limit: Decimal | None, price: Decimal) -> bool:
        assert limit is not None
        return price <= limit if side is Side.BUY else price >= limit

    def _check_margin(self, symbol: str, side: Side, quantity: Decimal, price: Decimal) -> None:
        held = self._positions.get(symbol, FLAT).quantity
        increase = _increase(held, side, quantity)
        if increase <= 0:
            return
        needed = increase * price / self.config.leverage + increase * price * self.config.taker_fee
        if needed > self._available_margin():
            raise VenueRejected(-2019, "Margin is insufficient.")

    def _available_margin(self) -> Decimal:
        """Wallet + unrealised PnL - initial margin of positions and of resting opening orders."""
        leverage = self.config.leverage
        used = sum(
            (
                abs(p.quantity) * self._tapes[s].price / leverage
                for s, p in self._positions.items()
                if p.quantity != 0 and s in self._tapes
            ),
            ZERO,
        )
        for venue_id in self._open_ids():
            order = self._orders[venue_id]
            if order.type == "LIMIT" and not order.reduce_only and order.price is not None:
                used += (order.quantity - order.executed_quantity) * order.price / leverage
        return self._ledger().wallet_balance + self._unrealized() - used

    def _ledger(self) -> Ledger:
        return Ledger(start_balance=self._start_balance, positions=self._positions)

    def _unrealized(self) -> Decimal:
        return sum(
            (
                unrealized_pnl(p, mark_price=self._tapes[s].price)
                for s, p in self._positions.items()
                if p.quantity != 0 and s in self._tapes
            ),
            ZERO,
        )

    def _open_ids(self) -> list[str]:
        return sorted(self._open_by_client_id.values(), key=int)

    def _find(self, symbol: str, client_order_id: str) -> _Order | None:
        venue_id = self._latest_by_client_id.get(client_order_id)
        found = self._orders.get(venue_id) if venue_id is not None else None
        return found if found is not None and found.symbol == symbol else None

    def _slipped(self, symbol: str, side: Side, price: Decimal) -> Decimal:
        """``price`` made worse by the slippage, rounded outwards to the tick."""
        tick = self.config.symbols[symbol].tick_size
        shift = self.config.slippage_bps / Decimal(10_000)
        if side is Side.BUY:
            return (price * (1 + shift) / tick).to_integral_value(rounding=ROUND_CEILING) * tick
        ticks = (price * (1 - shift) / tick).to_integral_value(rounding=ROUND_FLOOR)
        return max(tick, ticks * tick)

    def _take(self, order: _Order) -> None:
        """Fill a marketable order at the first price after the decision: one more step, or
        the step an earlier order of the same moment already took (every order decided at
        one time fills at the same first price after it, in live paper as in replay)."""
        tape = self._tapes[order.symbol]
        if tape.taken_for_ms == order.time_ms and tape.last_step_ms >= order.time_ms:
            step = _Step(tape.last_step_ms, tape.price)
        else:
            taken = self._source.next_step(order.symbol, after_ms=tape.last_step_ms)
            # Replay out of bars, or a gap in them: no price within a bar of the decision
            # (filling at the far side of a gap would trade on a price from the future).
            after = max(tape.last_step_ms, order.time_ms)
            if taken is None or taken.time_ms > after + self._source.bar_ms:
                self._close(order, VenueStatus.EXPIRED, order.time_ms)
                return
            step = taken
            # The order itself must not be filled by this step as if it had been resting.
            self._apply_step(order.symbol, step, taking=order.venue_order_id)
            tape.taken_for_ms = order.time_ms
        price = self._slipped(order.symbol, order.side, step.price)
        if order.type == "LIMIT" and not self._limit_reached(order.side, order.price, price):
            return  # the market moved away: it rests like any limit order
        self._execute(order, price, taker=True, time_ms=step.time_ms)

    def _apply_step(self, symbol: str, step: _Step, *, taking: str | None = None) -> None:
        tape = self._tapes[symbol]
        self._settle_funding(symbol, before_ms=step.time_ms)
        bucket = step.time_ms - step.time_ms % self._source.bar_ms
        if tape.bar is not None and tape.bar.open_time_ms != bucket:
            self._close_bar(tape)
        if tape.bar is None:
            tape.bar = _OpenBar(bucket, step.price, step.price, step.price, step.price, 0)
        bar = tape.bar
        bar.high, bar.low, bar.close = (
            max(bar.high, step.price),
            min(bar.low, step.price),
            step.price,
        )
        bar.steps += 1
        if step.bar is not None:
            bar.given = step.bar
        tape.price, tape.last_step_ms = step.price, step.time_ms
        for venue_id in self._open_ids():
            order = self._orders[venue_id]
            if order.symbol != symbol or venue_id == taking:
                continue
            if order.type == "STOP_MARKET" and order.stop_price is not None:
                if self._stop_triggered(order.side, order.stop_price, step.price):
                    fill_price = self._slipped(symbol, order.side, step.price)
                    self._execute(order, fill_price, taker=True, time_ms=step.time_ms)
            elif order.type == "LIMIT" and self._limit_reached(order.side, order.price, step.price):
                assert order.price is not None
                self._execute(order, order.price, taker=False, time_ms=step.time_ms)

    def _settle_funding(self, symbol: str, *, before_ms: int) -> None:
        """Settle every funding time before ``before_ms`` at the last price at or before it."""
        tape = self._tapes[symbol]
        while tape.next_funding_ms < before_ms:
            position = self._positions.get(symbol, FLAT)
            rate = self.config.rate(symbol)
            if position.quantity != 0:
                self._positions[symbol], payment = funding_applied(
                    position, mark_price=tape.price, rate=rate
                )
                self._funding.append(
                    FundingPayment(symbol, tape.next_funding_ms, rate, tape.price, payment)
                )
            tape.next_funding_ms += self._funding_interval_ms(symbol)

    def _close_bar(self, tape: _Tape) -> None:
        bar = tape.bar
        assert bar is not None
        if bar.given is not None:
            closed = bar.given
        else:
            # Synthetic volume: busier when the bar moved more (deterministic, no extra draws).
            move = abs(bar.close - bar.open) / bar.open
            closed = VenueBar(
                open_time_ms=bar.open_time_ms,
                close_time_ms=bar.open_time_ms + self._source.bar_ms - 1,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=quantize(bar.steps * (1 + 200 * move), places=3),
            )
        tape.bars.append(closed)
        del tape.bars[: -self.config.bar_history]
        tape.bar = None

    def _execute(self, order: _Order, price: Decimal, *, taker: bool, time_ms: int) -> None:
        quantity = order.quantity - order.executed_quantity
        position = self._positions.get(order.symbol, FLAT)
        if order.reduce_only:
            if _increase(position.quantity, order.side, quantity) == quantity:
                self._close(order, VenueStatus.EXPIRED, time_ms)
                return
            quantity = min(quantity, abs(position.quantity))
        rate = self.config.taker_fee if taker else self.config.maker_fee
        with localcontext(_WIDE):
            fee = quantity * price * rate
        self._positions[order.symbol], realized = fill_applied(
            position, side=order.side, quantity=quantity, price=price, fee=fee
        )
        order.executed_quantity += quantity
        order.cum_quote += quantity * price
        self._next_trade_id += 1
        self._trades.append(
            VenueTrade(
                trade_id=str(self._next_trade_id - 1),
                venue_order_id=order.venue_order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=quantity,
                price=price,
                fee=fee,
                realized_pnl=realized,
                time_ms=time_ms,
            )
        )
        done = order.executed_quantity == order.quantity
        self._close(order, VenueStatus.FILLED if done else VenueStatus.EXPIRED, time_ms)

    def _close(self, order: _Order, status: VenueStatus, time_ms: int) -> None:
        order.status, order.update_ms = status, time_ms
        # Binance's id rule: the client id is free again once its order is no longer open.
        if self._open_by_client_id.get(order.client_order_id) == order.venue_order_id:
            del self._open_by_client_id[order.client_order_id]

    # --- the JSON document ----------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "start_balance": str(self._start_balance),
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "orders": [_order_json(o) for o in self._orders.values()],
            "trades": [_trade_json(t) for t in self._trades],
            "funding": [_funding_json(f) for f in self._funding],
            "positions": {s: _position_json(p) for s, p in self._positions.items()},
            "tapes": {s: _tape_json(t) for s, t in self._tapes.items()},
            "market": self._source.state(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("schema") != SCHEMA:
            raise ValueError(f"paper account {self.name!r}: unknown schema {state.get('schema')}")
        self._start_balance = Decimal(state["start_balance"])
        self._orders = {o.venue_order_id: o for o in map(_order_from_json, state["orders"])}
        self._latest_by_client_id = {
            o.client_order_id: o.venue_order_id for o in self._orders.values()
        }
        self._open_by_client_id = {
            o.client_order_id: o.venue_order_id for o in self._orders.values() if o.is_open
        }
        self._trades = [_trade_from_json(t) for t in state["trades"]]
        self._funding = [_funding_from_json(f) for f in state["funding"]]
        self._positions = {s: _position_from_json(p) for s, p in state["positions"].items()}
        self._next_order_id = int(state["next_order_id"])
        self._next_trade_id = int(state["next_trade_id"])
        # Symbols added to the config since the save start fresh; removed ones stop pricing.
        for symbol, saved in state["tapes"].items():
            if symbol in self._tapes:
                self._tapes[symbol] = _tape_from_json(saved)
        self._source.restore(state["market"])


def _aggregated(bars: Sequence[VenueBar], *, base_ms: int, interval_ms: int) -> list[VenueBar]:
    """Base bars merged into ``interval_ms`` bars; only intervals with every base bar."""
    groups: dict[int, list[VenueBar]] = {}
    for bar in bars:
        groups.setdefault(bar.open_time_ms - bar.open_time_ms % interval_ms, []).append(bar)
    return [
        VenueBar(
            open_time_ms=start,
            close_time_ms=start + interval_ms - 1,
            open=group[0].open,
            high=max(b.high for b in group),
            low=min(b.low for b in group),
            close=group[-1].close,
            volume=sum((b.volume for b in group), ZERO),
        )
        for start, group in groups.items()
        if len(group) == interval_ms // base_ms
    ]


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _order_json(order: _Order) -> dict[str, Any]:
    return {
        "venue_order_id": order.venue_order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": str(order.side),
        "type": order.type,
        "quantity": str(order.quantity),
        "price": _dec(order.price),
        "stop_price": _dec(order.stop_price),
        "reduce_only": order.reduce_only,
        "time_ms": order.time_ms,
        "status": str(order.status),
        "executed_quantity": str(order.executed_quantity),
        "cum_quote": str(order.cum_quote),
        "update_ms": order.update_ms,
    }


def _order_from_json(data: dict[str, Any]) -> _Order:
    return _Order(
        venue_order_id=data["venue_order_id"],
        client_order_id=data["client_order_id"],
        symbol=data["symbol"],
        side=Side(data["side"]),
        type=data["type"],
        quantity=Decimal(data["quantity"]),
        price=_undec(data["price"]),
        stop_price=_undec(data["stop_price"]),
        reduce_only=bool(data["reduce_only"]),
        time_ms=int(data["time_ms"]),
        status=VenueStatus(data["status"]),
        executed_quantity=Decimal(data["executed_quantity"]),
        cum_quote=Decimal(data["cum_quote"]),
        update_ms=int(data["update_ms"]),
    )


def _trade_json(trade: VenueTrade) -> dict[str, Any]:
    return {
        "trade_id": trade.trade_id,
        "venue_order_id": trade.venue_order_id,
        "symbol": trade.symbol,
        "side": str(trade.side),
        "quantity": str(trade.quantity),
        "price": str(trade.price),
        "fee": str(trade.fee),
        "realized_pnl": str(trade.realized_pnl),
        "time_ms": trade.time_ms,
    }


def _trade_from_json(data: dict[str, Any]) -> VenueTrade:
    return VenueTrade(
        trade_id=data["trade_id"],
        venue_order_id=data["venue_order_id"],
        symbol=data["symbol"],
        side=Side(data["side"]),
        quantity=Decimal(data["quantity"]),
        price=Decimal(data["price"]),
        fee=Decimal(data["fee"]),
        realized_pnl=Decimal(data["realized_pnl"]),
        time_ms=int(data["time_ms"]),
    )


def _funding_json(payment: FundingPayment) -> dict[str, Any]:
    return {
        "symbol": payment.symbol,
        "time_ms": payment.time_ms,
        "rate": str(payment.rate),
        "mark_price": str(payment.mark_price),
        "amount": str(payment.amount),
    }


def _funding_from_json(data: dict[str, Any]) -> FundingPayment:
    return FundingPayment(
        symbol=data["symbol"],
        time_ms=int(data["time_ms"]),
        rate=Decimal(data["rate"]),
        mark_price=Decimal(data["mark_price"]),
        amount=Decimal(data["amount"]),
    )


_POSITION_FIELDS = ("quantity", "entry_price", "realized_pnl", "fees", "funding", "entry_residue")


def _position_json(position: PositionState) -> dict[str, str]:
    return {name: str(getattr(position, name)) for name in _POSITION_FIELDS}


def _position_from_json(data: dict[str, str]) -> PositionState:
    return PositionState(
        quantity=Decimal(data["quantity"]),
        entry_price=Decimal(data["entry_price"]),
        realized_pnl=Decimal(data["realized_pnl"]),
        fees=Decimal(data["fees"]),
        funding=Decimal(data["funding"]),
        entry_residue=Decimal(data["entry_residue"]),
    )


def _bar_json(bar: VenueBar) -> list[Any]:
    return [
        bar.open_time_ms,
        bar.close_time_ms,
        str(bar.open),
        str(bar.high),
        str(bar.low),
        str(bar.close),
        str(bar.volume),
    ]


def _bar_from_json(data: list[Any]) -> VenueBar:
    return VenueBar(
        open_time_ms=int(data[0]),
        close_time_ms=int(data[1]),
        open=Decimal(data[2]),
        high=Decimal(data[3]),
        low=Decimal(data[4]),
        close=Decimal(data[5]),
        volume=Decimal(data[6]),
    )


def _tape_json(tape: _Tape) -> dict[str, Any]:
    bar = tape.bar
    return {
        "price": str(tape.price),
        "last_step_ms": tape.last_step_ms,
        "next_funding_ms": tape.next_funding_ms,
        "bar": None
        if bar is None
        else {
            "open_time_ms": bar.open_time_ms,
            "open": str(bar.open),
            "high": str(bar.high),
            "low": str(bar.low),
            "close": str(bar.close),
            "steps": bar.steps,
            "given": None if bar.given is None else _bar_json(bar.given),
        },
        "bars": [_bar_json(b) for b in tape.bars],
    }


def _tape_from_json(data: dict[str, Any]) -> _Tape:
    saved = data["bar"]
    bar = (
        None
        if saved is None
        else _OpenBar(
            open_time_ms=int(saved["open_time_ms"]),
            open=Decimal(saved["open"]),
            high=Decimal(saved["high"]),
            low=Decimal(saved["low"]),
            close=Decimal(saved["close"]),
            steps=int(saved["steps"]),
            given=None if saved["given"] is None else _bar_from_json(saved["given"]),
        )
    )
    return _Tape(
        price=Decimal(data["price"]),
        last_step_ms=int(data["last_step_ms"]),
        next_funding_ms=int(data["next_funding_ms"]),
        bar=bar,
        bars=[_bar_from_json(b) for b in data["bars"]],
    )
