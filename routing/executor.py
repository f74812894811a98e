"""The executor tick (SPEC §6): a short list of named steps, each a function of the context.

market data -> ML scoring queued -> signals -> sizing + pre-trade checks -> route -> fills ->
protective stops (and, while halted, cancelling entries) -> NAV + risk state -> autotune ->
heartbeat.

Every step takes the ``TickContext`` (clock, venue, run) instead of ``timezone.now()`` or a
global client, so a replay runs the same steps over history. Each step commits its own rows
(with their outbox rows and live pushes); a failure in one tick leaves every earlier step's
work in place and the next tick carries on.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db import transaction

from doctor.services import heartbeat_record
from mlinsights.services import replay_scoring, scoring_request
from risk.autotune import finite_returns, realised_volatility
from risk.checks import pretrade_check
from risk.limits import OrderIntent, Side
from risk.models import RiskState
from risk.selectors import limits_configured, limits_effective, values_from_row
from risk.services import risk_autotune, risk_state_load
from risk.sizing import vol_target_quantity
from routing.books import fills_record, income_record, nav_record
from routing.filters import FilterRejection, SymbolFilters, order_rounded
from routing.models import (
    Instrument,
    MarketBar,
    NavPoint,
    Order,
    Position,
    Signal,
    SignalPosition,
)
from routing.orders import order_create, order_send
from routing.protection import entries_cancel, stops_maintain, stops_refresh
from routing.reconcile import symbol_halted
from routing.signal_services import signals_generate
from routing.signals import SOURCE_NAMES
from routing.venues import Venue
from tradingsite.replaydb import replay_active

logger = logging.getLogger(__name__)

BAR_INTERVAL = "1m"
VOL_WINDOW = 60  # closed bars for realised volatility
TARGET_VOL = 0.002  # per-bar volatility one signal's position may add to the account
MAX_FRACTION = Decimal("0.5")  # notional / NAV per signal position
AUTOTUNE_RETURNS = 240  # NAV points the autotuner looks back over
LIVE = "live"


@dataclass(frozen=True)
class TickContext:
    clock: Callable[[], datetime]
    venue: Venue
    symbols: tuple[str, ...]
    run: str = LIVE  # or "replay-<id>" (``routing.replay``)


@dataclass
class TickReport:
    started_at: str
    bars: int = 0
    scoring_queued: int = 0
    signals: int = 0
    orders: int = 0
    rejects: int = 0
    fills: int = 0
    stops: int = 0
    nav: str = ""
    size_multiplier: str = ""
    effective_limits: dict[str, object] = field(default_factory=dict)
    duration_ms: float = 0.0


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- steps ---------------------------------------------------------------------------------


def step_risk_state(ctx: TickContext) -> None:
    """The risk state in force: verified (or restored from a snapshot); on the very first tick,
    started from the venue's wallet."""
    if RiskState.objects.exists():
        risk_state_load()
    else:
        risk_state_load(initial_nav=ctx.venue.wallet_balance(), at=ctx.clock())


def step_instruments(ctx: TickContext) -> int:
    """Exchange filters for the traded symbols, fetched when any is missing (start-up)."""
    known = set(Instrument.objects.filter(symbol__in=ctx.symbols).values_list("symbol", flat=True))
    if known >= set(ctx.symbols):
        return 0
    filters = ctx.venue.exchange_filters()
    missing = [symbol for symbol in ctx.symbols if symbol not in filters]
    if missing:
        raise ValueError(f"the venue does not list {', '.join(missing)} (check SYMBOLS)")
    for symbol in ctx.symbols:
        f = filters[symbol]
        Instrument.objects.update_or_create(
            symbol=symbol,
            defaults={
                "tick_size": f.tick_size,
                "step_size": f.market_step_size,
                "min_qty": f.market_min_qty,
                "max_qty": f.market_max_qty,
                "min_notional": f.min_notional,
            },
        )
    return len(ctx.symbols)


def step_market_data(ctx: TickContext) -> int:
    """Closed bars from the venue since the newest stored one (gaps fill themselves)."""
    stored = 0
    for symbol in ctx.symbols:
        newest = (
            MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL)
            .order_by("-open_time")
            .values_list("open_time", flat=True)
            .first()
        )
        since = _ms(newest) + 1 if newest is not None else 0
        bars = ctx.venue.closed_bars(symbol=symbol, interval=BAR_INTERVAL, since_ms=since)
        MarketBar.objects.bulk_create(
            [
                MarketBar(
                    symbol=symbol,
                    interval=BAR_INTERVAL,
                    open_time=datetime.fromtimestamp(bar.open_time_ms / 1000, tz=UTC),
                    close_time=datetime.fromtimestamp(bar.close_time_ms / 1000, tz=UTC),
                    open=bar.open,
                    high=bar.high,
                    low=bar.low,
                    close=bar.close,
                    volume=bar.volume,
                )
                for bar in bars
            ],
            ignore_conflicts=True,
        )
        stored += len(bars)
    return stored


def step_ml_score(ctx: TickContext) -> int:
    """Live: queue scoring of the newest closed bars on the ML queue (once per bar; never
    waits for it: the ML source uses the prediction on a later tick, while it is fresh).
    Replay: score them now with the model of that moment (``replay_scoring``)."""
    if replay_active() is not None:
        return replay_scoring(symbols=ctx.symbols, at=ctx.clock())
    return scoring_request(symbols=ctx.symbols, at=ctx.clock())


EXTERNAL_SIGNAL_TTL = timedelta(minutes=5)  # an external signal not acted on by then expires


def step_signals(ctx: TickContext) -> list[Signal]:
    """The built-in sources' new signals, and external ones (``submit_signal``) waiting."""
    at = ctx.clock()
    generated = [
        signal for symbol in ctx.symbols for signal in signals_generate(symbol=symbol, at=at)
    ]
    waiting = Signal.objects.filter(status=Signal.Status.NEW, created_at__lte=at).exclude(
        pk__in=[signal.pk for signal in generated]
    )
    # A built-in source's signal is for the tick that made it: one left NEW by a tick that
    # failed after making it is stale (its source decides again on the next bar), and sizing
    # it beside the new one would double the source's position.
    waiting.filter(source__in=SOURCE_NAMES).update(
        status=Signal.Status.EXPIRED, risk_reason="left by a tick that did not finish"
    )
    waiting.filter(created_at__lt=at - EXTERNAL_SIGNAL_TTL).update(
        status=Signal.Status.EXPIRED, risk_reason="not acted on within its time to live"
    )
    external = list(waiting.filter(symbol__in=ctx.symbols).order_by("created_at", "id"))
    return generated + external


def _last_close(symbol: str, at: datetime) -> Decimal | None:
    return (
        MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
        .order_by("-open_time")
        .values_list("close", flat=True)
        .first()
    )


def _bar_volatility(symbol: str, at: datetime) -> float | None:
    closes = list(
        MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
        .order_by("-open_time")
        .values_list("close", flat=True)[: VOL_WINDOW + 1]
    )
    if len(closes) < VOL_WINDOW + 1:
        return None
    prices = np.array([float(c) for c in reversed(closes)])
    returns, _ = finite_returns(np.diff(np.log(prices)))
    return realised_volatility(returns, window=VOL_WINDOW)


def _source_position(symbol: str, source: str) -> Decimal:
    """The signal source's virtual position in ``symbol`` (its fills, and its share of the
    stops and flattens that reduced it: ``routing.books``)."""
    quantity = (
        SignalPosition.objects.filter(symbol=symbol, source=source)
        .values_list("quantity", flat=True)
        .first()
    )
    return quantity if quantity is not None else Decimal(0)


def _filters(symbol: str) -> SymbolFilters | None:
    row = Instrument.objects.filter(symbol=symbol).first()
    return row.as_filters() if row is not None else None


def _reject(signal: Signal, code: str, reason: str) -> None:
    signal.status, signal.risk_code, signal.risk_reason = Signal.Status.REJECTED, code, reason
    signal.save(update_fields=["status", "risk_code", "risk_reason"])


def step_size_and_check(ctx: TickContext, signals: list[Signal]) -> list[Order]:
    """Each signal becomes the order that moves its source's position to the signal's
    volatility-targeted size, if every pre-trade check passes."""
    at = ctx.clock()
    state = values_from_row(risk_state_load())
    marks = ctx.venue.mark_prices()
    # Orders are only created here (sent in the next step): positions and open orders are
    # the same for every signal of the tick, read once.
    positions = dict(Position.objects.values_list("symbol", "quantity"))
    open_orders = Order.objects.filter(
        status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED]
    ).count()
    orders: list[Order] = []
    for signal in signals:
        halted = symbol_halted(signal.symbol)
        if halted:
            _reject(signal, "symbol_halted", halted)
            continue
        if signal.decision_price is None:
            # An external signal is priced at the last closed bar, like the sources' own.
            signal.decision_price = _last_close(signal.symbol, at)
            signal.save(update_fields=["decision_price"])
        filters, price = _filters(signal.symbol), signal.decision_price
        vol = _bar_volatility(signal.symbol, at)
        if filters is None or price is None or vol is None or not math.isfinite(vol):
            _reject(signal, "no_sizing_data", "no exchange filters, price or volatility yet")
            continue
        size = vol_target_quantity(
            nav=state.nav,
            price=price,
            realised_vol=vol,
            target_vol=TARGET_VOL,
            max_fraction=MAX_FRACTION,
            step_size=filters.step_size,
        )
        limits = limits_effective(symbol=signal.symbol, multiplier=state.size_multiplier)
        # The sizer stays inside the effective size limits; the checks remain the safety net.
        size = min(size * signal.strength, limits.max_position_notional / price)
        target = size if signal.side == Side.BUY else -size
        delta = target - _source_position(signal.symbol, signal.source)
        delta = max(
            -limits.max_order_notional / price, min(limits.max_order_notional / price, delta)
        )
        side = Side.BUY if delta > 0 else Side.SELL
        rounded = order_rounded(
            filters=filters,
            quantity=abs(delta) or filters.step_size / 2,
            price=price,
            order_type="MARKET",
            side=side,
        )
        if isinstance(rounded, FilterRejection):
            _reject(signal, str(rounded.reason), f"no order: {rounded.message}")
            continue
        decision = pretrade_check(
            intent=OrderIntent(
                symbol=signal.symbol, side=side, quantity=rounded.quantity, price=price
            ),
            account=state.account_view(open_orders=open_orders),
            limits=limits,
            positions=positions,
            marks=marks,
            now=at,
        )
        if not decision.ok:
            _reject(signal, ",".join(sorted(decision.codes)), decision.message)
            continue
        with transaction.atomic():
            signal.status = Signal.Status.ACCEPTED
            signal.save(update_fields=["status"])
            orders.append(
                order_create(
                    symbol=signal.symbol,
                    side=side,
                    quantity=rounded.quantity,
                    signal=signal,
                    decision_price=price,
                    at=at,
                )
            )
    return orders


def step_route(ctx: TickContext, orders: list[Order]) -> list[Order]:
    sent = []
    for order in orders:
        sent.append(order_send(order=order, venue=ctx.venue, clock=ctx.clock))
        if order.signal_id is not None:
            Signal.objects.filter(pk=order.signal_id).update(status=Signal.Status.ROUTED)
    return sent


def step_fills(ctx: TickContext) -> int:
    # Stops first: a stop that fired must be known as ours before its exit fill is booked.
    stops_refresh(venue=ctx.venue, symbols=ctx.symbols, clock=ctx.clock)
    return sum(len(fills_record(venue=ctx.venue, symbol=symbol)) for symbol in ctx.symbols)


def step_protection(ctx: TickContext) -> int:
    """Every open position keeps its reduce-only stop on the exchange; while trading is
    halted, open entry orders are cancelled (the stops stay)."""
    state = RiskState.objects.values("halted").first()
    if state is not None and state["halted"]:
        entries_cancel(venue=ctx.venue, clock=ctx.clock)
    placed = 0
    for symbol in ctx.symbols:
        distance = limits_configured(symbol=symbol).stop_distance
        placed += len(
            stops_maintain(venue=ctx.venue, symbols=[symbol], distance=distance, clock=ctx.clock)
        )
    return placed


def step_nav(ctx: TickContext) -> NavPoint:
    # Funding and transfers first: transfers are the NAV point's cash flow, not PnL.
    income_record(venue=ctx.venue)
    return nav_record(venue=ctx.venue, at=ctx.clock())


def step_autotune(ctx: TickContext) -> None:
    points = list(
        NavPoint.objects.order_by("-at").values_list("nav", "cash_flow")[:AUTOTUNE_RETURNS]
    )
    points.reverse()
    navs = [float(nav) for nav, _ in points]
    flows = [float(flow) for _, flow in points]
    returns = [
        (navs[i] - flows[i] - navs[i - 1]) / navs[i - 1] if navs[i - 1] > 0 else math.nan
        for i in range(1, len(navs))
    ]
    risk_autotune(returns=np.array(returns, dtype=float))


def step_heartbeat(ctx: TickContext, report: TickReport) -> None:
    state = RiskState.objects.first()
    if state is not None:
        report.size_multiplier = str(state.size_multiplier)
        report.effective_limits = dict(state.effective_limits)
    heartbeat_record(
        component="executor",
        hostname=socket.gethostname(),
        metrics={**asdict(report), "run": ctx.run},
        at=ctx.clock(),
    )


# --- the tick ------------------------------------------------------------------------------


def executor_tick(ctx: TickContext, *, renew: Callable[[], None] = lambda: None) -> TickReport:
    """One tick: the steps in order. ``renew`` keeps the single-flight lock between steps."""
    started = time.perf_counter()
    report = TickReport(started_at=ctx.clock().isoformat())
    step_risk_state(ctx)
    step_instruments(ctx)
    report.bars = step_market_data(ctx)
    report.scoring_queued = step_ml_score(ctx)
    renew()
    signals = step_signals(ctx)
    report.signals = len(signals)
    orders = step_size_and_check(ctx, signals)
    report.rejects = len(signals) - len(orders)
    renew()
    report.orders = len(step_route(ctx, orders))
    renew()
    report.fills = step_fills(ctx)
    report.stops = step_protection(ctx)
    renew()
    report.nav = str(step_nav(ctx).nav)
    step_autotune(ctx)
    report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    step_heartbeat(ctx, report)
    return report
