"""Routing records: instruments, bars, signals, orders, fills, positions, NAV and cash flows."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q

from routing.filters import SymbolFilters
from tradingsite.decimals import DECIMAL_PLACES, MAX_DIGITS


def _decimal(**kwargs: Any) -> models.DecimalField[Any, Any]:
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


def _exact(**kwargs: Any) -> models.DecimalField[Any, Any]:
    # PnL, fees and cost bases are products of quantities and prices: kept exact (18 places)
    # so the books add up to the venue's to the last digit.
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


class Side(models.TextChoices):
    BUY = "BUY", "buy"
    SELL = "SELL", "sell"


class Instrument(models.Model):
    """A traded symbol with the venue's filters (refreshed from exchangeInfo)."""

    symbol = models.CharField(max_length=30, unique=True)
    tick_size = _decimal()
    step_size = _decimal()
    min_qty = _decimal()
    max_qty = _decimal()
    min_notional = _decimal()
    funding_interval_hours = models.PositiveSmallIntegerField(default=8)
    # Set by reconciliation when the venue and the books keep disagreeing on this symbol (fail
    # closed); only a person lifts it (``routing.reconcile.symbol_unhalt``).
    trading_halted = models.BooleanField(default=False)
    halt_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tick_size__gt=0) & Q(step_size__gt=0) & Q(min_qty__gt=0),
                name="instrument_steps_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_qty__gte=F("min_qty")), name="instrument_max_qty_at_least_min"
            ),
        ]

    def __str__(self) -> str:
        return self.symbol

    def as_filters(self) -> SymbolFilters:
        """The row as the filters orders are rounded with (market and limit steps alike)."""
        return SymbolFilters(
            symbol=self.symbol,
            tick_size=self.tick_size,
            step_size=self.step_size,
            min_qty=self.min_qty,
            max_qty=self.max_qty,
            market_step_size=self.step_size,
            market_min_qty=self.min_qty,
            market_max_qty=self.max_qty,
            min_notional=self.min_notional,
        )


class MarketBar(models.Model):
    """One closed kline (decisions use closed bars only)."""

    symbol = models.CharField(max_length=30)
    interval = models.CharField(max_length=8)
    open_time = models.DateTimeField()
    close_time = models.DateTimeField()
    open = _decimal()
    high = _decimal()
    low = _decimal()
    close = _decimal()
    volume = _decimal()
    quote_volume = _decimal(default=0)
    trades = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["symbol", "interval", "open_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "interval", "open_time"], name="marketbar_one_per_open_time"
            ),
            models.CheckConstraint(
                condition=Q(high__gte=F("low"))
                & Q(high__gte=F("open"))
                & Q(high__gte=F("close"))
                & Q(low__lte=F("open"))
                & Q(low__lte=F("close"))
                & Q(low__gt=0)
                & Q(volume__gte=0),
                name="marketbar_ohlc_consistent",
            ),
            models.CheckConstraint(
                condition=Q(close_time__gt=F("open_time")), name="marketbar_closes_after_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.interval} {self.open_time:%Y-%m-%d %H:%M}"


class SignalSource(models.Model):
    """A signal source the executor runs, switched and weighted by operators in the admin."""

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    weight = _decimal(default=1, help_text="Share of the volatility-targeted size, in [0, 1].")
    params = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(weight__gte=0) & Q(weight__lte=1), name="signalsource_weight_unit"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'on' if self.enabled else 'off'}, weight {self.weight})"


class Signal(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "new"
        ACCEPTED = "accepted", "accepted by risk"
        REJECTED = "rejected", "rejected by risk"
        ROUTED = "routed", "routed"
        EXPIRED = "expired", "expired"

    created_at = models.DateTimeField()
    source = models.CharField(max_length=64)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    strength = _decimal(help_text="Conviction in [0, 1].")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    decision_price = _decimal(null=True, blank=True)
    risk_code = models.CharField(max_length=64, blank=True)
    risk_reason = models.TextField(blank=True)
    # The ML source's signals record the prediction they were made from (one signal each).
    prediction = models.ForeignKey(
        "mlinsights.Prediction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="signals",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["source", "-created_at"], name="signal_source_recent"),
            models.Index(fields=["status", "-created_at"], name="signal_status_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(strength__gte=0) & Q(strength__lte=1), name="signal_strength_unit"
            ),
            models.UniqueConstraint(
                fields=["prediction"],
                condition=Q(prediction__isnull=False),
                name="signal_one_per_prediction",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.side} {self.symbol} ({self.status})"


class Order(models.Model):
    """An order from decision to final state. ``client_order_id`` is assigned and stored before
    the first attempt and kept across retries and restarts: it is how an unknown outcome is
    resolved (query by origClientOrderId) instead of sending the order again."""

    class Type(models.TextChoices):
        MARKET = "MARKET", "market"
        LIMIT = "LIMIT", "limit"
        STOP_MARKET = "STOP_MARKET", "stop market"

    class Purpose(models.TextChoices):
        ENTRY = "entry", "entry"
        EXIT = "exit", "exit"
        STOP = "stop", "protective stop"
        FLATTEN = "flatten", "flatten"

    class Status(models.TextChoices):
        PENDING = "pending", "pending (not sent yet)"
        SUBMITTING = "submitting", "submitting"
        UNKNOWN = "unknown", "unknown (sent, outcome not known)"
        OPEN = "open", "open on the venue"
        PARTIALLY_FILLED = "partially_filled", "partially filled"
        FILLED = "filled", "filled"
        CANCELED = "canceled", "canceled"
        REJECTED = "rejected", "rejected"
        EXPIRED = "expired", "expired"

    FINAL = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED})

    client_order_id = models.CharField(max_length=36, unique=True)
    venue_order_id = models.CharField(max_length=64, blank=True)
    signal = models.ForeignKey(
        Signal, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.ENTRY)
    quantity = _decimal()
    price = _decimal(null=True, blank=True)
    stop_price = _decimal(null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    filled_quantity = _decimal(default=0)
    decision_price = _decimal(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    decided_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Set once the order's execution quality (sent, rejected, latency) is in the router
    # health aggregates (``routing.health``), so each order counts exactly once.
    health_counted = models.BooleanField(default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [
            models.Index(fields=["status", "symbol"], name="order_status_symbol"),
            models.Index(
                fields=["id"], condition=Q(health_counted=False), name="order_health_pending"
            ),
            models.Index(fields=["-decided_at"], name="order_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                name="order_filled_within_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.quantity} {self.symbol} ({self.status})"


class Fill(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    venue_trade_id = models.CharField(max_length=64)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = _decimal()
    price = _decimal()
    fee = _exact(default=0)
    realized_pnl = _exact(default=0)
    signal = models.ForeignKey(
        Signal, null=True, blank=True, on_delete=models.PROTECT, related_name="fills"
    )
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["-filled_at", "-id"]
        indexes = [models.Index(fields=["symbol", "-filled_at"], name="fill_symbol_recent")]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "venue_trade_id"], name="fill_unique_trade"),
            models.CheckConstraint(
                condition=Q(quantity__gt=0) & Q(price__gt=0) & Q(fee__gte=0),
                name="fill_amounts_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"


class Position(models.Model):
    """The account's net position per symbol (one-way mode), as the accounting computes it."""

    symbol = models.CharField(max_length=30, unique=True)
    quantity = _decimal(default=0, help_text="Signed: long > 0.")
    entry_price = _decimal(default=0)
    entry_residue = _exact(default=0)
    realized_pnl = _exact(default=0)
    fees = _exact(default=0)
    funding = _exact(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity=0, entry_price=0) | (~Q(quantity=0) & Q(entry_price__gt=0)),
                name="position_entry_iff_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.quantity} @ {self.entry_price}"


class CashFlow(models.Model):
    """Money moved in or out (deposit, withdrawal, transfer): it moves NAV but is not PnL."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "deposit"
        WITHDRAWAL = "withdrawal", "withdrawal"
        TRANSFER = "transfer", "transfer"

    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = _decimal(help_text="USDT; positive in, negative out.")
    venue_id = models.CharField(max_length=64, unique=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="cashflow_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} at {self.at:%Y-%m-%d %H:%M}"


class FundingPayment(models.Model):
    """One funding settlement of a position (PnL, unlike a cash flow): received > 0, paid < 0."""

    venue_id = models.CharField(max_length=96, unique=True)
    symbol = models.CharField(max_length=30)
    amount = _exact()
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"funding {self.amount} on {self.symbol} at {self.at:%Y-%m-%d %H:%M}"


class NavPoint(models.Model):
    at = models.DateTimeField()
    nav = _decimal()
    wallet = _decimal()
    unrealized_pnl = _decimal()
    cash_flow = _decimal(default=0, help_text="Net cash flow since the previous point.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["-at"], name="navpoint_recent")]

    def __str__(self) -> str:
        return f"NAV {self.nav} at {self.at:%Y-%m-%d %H:%M:%S}"


class PaperAccount(models.Model):
    """The paper venue's whole book (orders, trades, positions, wallet, market state) as JSON.

    Executor ticks run in different worker processes, so the book lives here between them.
    ``version`` is an optimistic lock: a save is an UPDATE ... WHERE version = <the version
    loaded>, so a writer that loaded a stale book fails instead of overwriting a newer one.
    """

    name = models.CharField(max_length=64, unique=True)
    state = models.JSONField(default=dict, help_text="Decimals as strings.")
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"paper account {self.name} (v{self.version})"


class SignalPosition(models.Model):
    """A signal source's virtual position in one symbol (``routing.accounting`` attribution).

    The venue nets every source into one position per symbol; here each source keeps its own,
    moved by its fills at the real prices and fees, and by its share of the fills that have no
    signal (stops, ``flatten``). The sources' quantities add up to the account's position.
    """

    source = models.CharField(max_length=64)
    symbol = models.CharField(max_length=30)
    quantity = _decimal(default=0, help_text="Signed: long > 0.")
    entry_price = _decimal(default=0)
    entry_residue = _exact(default=0)
    realized_pnl = _exact(default=0)
    fees = _exact(default=0)
    funding = _exact(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["source", "symbol"], name="signalposition_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.symbol} {self.quantity} @ {self.entry_price}"


class FillAttribution(models.Model):
    """A signal source's share of a fill, with the PnL it realised for that source."""

    fill = models.ForeignKey(Fill, on_delete=models.CASCADE, related_name="attributions")
    source = models.CharField(max_length=64)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = _decimal()
    price = _decimal()
    fee = _exact(default=0)
    realized_pnl = _exact(default=0, help_text="Gross of the fee, for this source.")
    closing = models.BooleanField(help_text="The fill reduced or closed the source's position.")
    decision_price = _decimal(null=True, blank=True)
    filled_at = models.DateTimeField()
    # Set once the row is in the router health aggregates (``routing.health``).
    health_counted = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["-filled_at", "-id"]
        indexes = [
            models.Index(fields=["-filled_at"], name="attribution_time"),
            models.Index(fields=["source", "symbol", "-filled_at"], name="attribution_recent"),
            models.Index(
                fields=["id"], condition=Q(health_counted=False), name="attribution_health_pending"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0) & Q(price__gt=0) & Q(fee__gte=0),
                name="attribution_amounts_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.side} {self.quantity} {self.symbol} @ {self.price}"


class HealthCell(models.Model):
    """Router health sums for one source, symbol and period (an hour or a day).

    Additive, so new fills and orders are added in without recomputing history; the fields
    are ``routing.analytics.CELL_FIELDS``. Floats: these are display aggregates, the books
    (fills, positions) stay exact.
    """

    period_seconds = models.PositiveIntegerField()
    start = models.BigIntegerField(help_text="Epoch seconds of the period's start.")
    source = models.CharField(max_length=64)
    symbol = models.CharField(max_length=30)
    values = models.JSONField(help_text="Sums in routing.analytics.CELL_FIELDS order.")

    class Meta:
        ordering = ["period_seconds", "start", "source", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["period_seconds", "start", "source", "symbol"], name="healthcell_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.symbol} {self.period_seconds}s @ {self.start}"


class RouterHealthSummary(models.Model):
    """The computed router health of one window (or the NAV curve): what the pages render."""

    key = models.CharField(max_length=16, unique=True)
    payload = models.JSONField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "router health summaries"

    def __str__(self) -> str:
        return f"router health {self.key} at {self.computed_at:%Y-%m-%d %H:%M:%S}"


class ReplayRun(models.Model):
    """One replay of the executor over stored bars (``routing.replay``). The run's own orders,
    fills, NAV and router health live in its own database (``tradingsite.replaydb``), never
    beside the live rows; this row is what the live side knows of it: what was asked, how far
    it got and what it found."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        INTERRUPTED = "interrupted", "interrupted"
        FAILED = "failed", "failed"
        DONE = "done", "done"

    symbols = models.JSONField(help_text="Symbols replayed, in order.")
    start = models.DateTimeField(help_text="First bar close replayed (inclusive).")
    end = models.DateTimeField(help_text="Last bar close replayed (inclusive).")
    settings = models.JSONField(
        default=dict, help_text="Starting NAV, fees, slippage and what was copied from live."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    storage = models.CharField(max_length=255, blank=True, help_text="Schema or file name.")
    bars_total = models.PositiveIntegerField(default=0, help_text="Decision points (bar closes).")
    bars_done = models.PositiveIntegerField(default=0)
    cursor = models.DateTimeField(
        null=True, blank=True, help_text="Last bar close decided on (a resumed run goes on after)."
    )
    bars_per_second = models.FloatField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    stop_requested = models.BooleanField(
        default=False, help_text="An operator asked the run to stop after its current chunk."
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gte=F("start")), name="replayrun_ordered"),
        ]

    def __str__(self) -> str:
        return (
            f"replay {self.pk} {','.join(self.symbols)} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"
        )
