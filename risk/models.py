"""Risk records: configured limits (with history), the live state, snapshots, autotune events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from tradingsite.decimals import DECIMAL_PLACES, MAX_DIGITS

POSITIVE = [MinValueValidator(Decimal("0.00000001"))]
FRACTION = [MinValueValidator(Decimal("0.00000001")), MaxValueValidator(Decimal(1))]


def _amount(help_text: str, validators: list[Any] = POSITIVE) -> models.DecimalField[Any, Any]:
    return models.DecimalField(
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        null=True,
        blank=True,
        validators=validators,
        help_text=help_text,
    )


# Limits that only make sense for the whole account: set on the global row, never per symbol.
ACCOUNT_LIMITS = (
    "max_gross_exposure",
    "max_leverage",
    "max_daily_loss",
    "max_drawdown",
    "max_open_orders",
    "loss_streak_limit",
    "loss_streak_cooldown_seconds",
    "autotune_floor",
)
SYMBOL_LIMITS = (
    "max_order_notional",
    "max_position_notional",
    "min_liquidation_distance",
    "stop_distance",
)


class RiskLimit(models.Model):
    """Configured limits: one global row (symbol "") and optional per-symbol overrides.

    A limit L allows values <= L and refuses values > L (the liquidation distance is a
    minimum). An override row sets only per-symbol limits; empty fields inherit the global row.
    """

    symbol = models.CharField(
        max_length=30, blank=True, unique=True, help_text="Empty for the global defaults."
    )
    max_order_notional = _amount("USDT per order.")
    max_position_notional = _amount("USDT per symbol, after the order.")
    max_gross_exposure = _amount("USDT over all symbols.")
    max_leverage = _amount("Gross exposure / NAV.")
    max_daily_loss = _amount("Fraction of the day's starting value, e.g. 0.03.", FRACTION)
    max_drawdown = _amount("Fraction below the peak, e.g. 0.10.", FRACTION)
    max_open_orders = models.PositiveIntegerField(null=True, blank=True)
    loss_streak_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Losing trades in a row that start a cooldown."
    )
    loss_streak_cooldown_seconds = models.PositiveIntegerField(null=True, blank=True)
    min_liquidation_distance = _amount(
        "Adverse move (fraction) the account must survive, e.g. 0.25.", FRACTION
    )
    stop_distance = _amount(
        "Distance (fraction of the entry price) of the protective stop every open position "
        "carries on the exchange, e.g. 0.05 (at most 0.5).",
        [MinValueValidator(Decimal("0.00000001")), MaxValueValidator(Decimal("0.5"))],
    )
    autotune_floor = _amount(
        "Lowest multiplier the autotuner may apply to size limits, in (0, 1].", FRACTION
    )
    kill_switch = models.BooleanField(default=False, help_text="Global row only.")
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["symbol"]
        constraints = [
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{name}__gt": 0}), name=f"risklimit_{name}_positive"
                )
                for name in (
                    "max_order_notional",
                    "max_position_notional",
                    "max_gross_exposure",
                    "max_leverage",
                    "max_daily_loss",
                    "max_drawdown",
                    "min_liquidation_distance",
                    "stop_distance",
                    "autotune_floor",
                )
            ],
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{name}__lte": 1}), name=f"risklimit_{name}_fraction"
                )
                for name in (
                    "max_daily_loss",
                    "max_drawdown",
                    "min_liquidation_distance",
                    "stop_distance",
                    "autotune_floor",
                )
            ],
            models.CheckConstraint(
                condition=Q(symbol="")
                | (
                    Q(kill_switch=False) & Q(**{f"{name}__isnull": True for name in ACCOUNT_LIMITS})
                ),
                name="risklimit_account_limits_only_global",
            ),
            models.CheckConstraint(
                condition=~Q(symbol="")
                | Q(**{f"{name}__isnull": False for name in (*ACCOUNT_LIMITS, *SYMBOL_LIMITS)}),
                name="risklimit_global_row_complete",
            ),
            models.CheckConstraint(
                condition=Q(max_order_notional__isnull=True)
                | Q(max_position_notional__isnull=True)
                | Q(max_order_notional__lte=models.F("max_position_notional")),
                name="risklimit_order_within_position",
            ),
        ]

    def __str__(self) -> str:
        return f"limits for {self.symbol}" if self.symbol else "global limits"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.symbol:
            if self.symbol != self.symbol.upper() or not self.symbol.isalnum():
                errors["symbol"] = (
                    "A futures symbol such as BTCUSDT (upper-case letters and digits)."
                )
            for name in ACCOUNT_LIMITS:
                if getattr(self, name) is not None:
                    errors[name] = "An account-wide limit: set it on the global row only."
            if self.kill_switch:
                errors["kill_switch"] = "The kill switch is on the global row only."
        else:
            for name in (*ACCOUNT_LIMITS, *SYMBOL_LIMITS):
                if getattr(self, name) is None:
                    errors[name] = "The global row must set every limit."
        order, position = self.max_order_notional, self.max_position_notional
        if order is not None and position is not None and order > position:
            errors["max_order_notional"] = (
                f"Must not exceed max_position_notional ({position}): one order could not fill it."
            )
        if errors:
            raise ValidationError(errors)


class RiskState(models.Model):
    """The live risk state: one row, the truth. Updated only through risk.services, which locks
    the row (select_for_update) and checks ``version`` (SQLite ignores row locks), and keeps
    ``checksum`` so a damaged row is detected and restored from the last good snapshot."""

    nav = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    index = models.DecimalField(max_digits=38, decimal_places=18)
    peak_index = models.DecimalField(max_digits=38, decimal_places=18)
    day = models.DateField()
    day_start_nav = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    day_start_index = models.DecimalField(max_digits=38, decimal_places=18)
    day_cash_flows = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    loss_streak = models.PositiveIntegerField(default=0)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    halted = models.BooleanField(default=False)
    halt_reason = models.TextField(blank=True)
    halted_at = models.DateTimeField(null=True, blank=True)
    size_multiplier = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=Decimal(1)
    )
    effective_limits = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    checksum = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "risk state"
        verbose_name_plural = "risk state"
        constraints = [
            models.CheckConstraint(condition=Q(index__gte=0), name="riskstate_index_not_negative"),
            models.CheckConstraint(
                condition=Q(peak_index__gte=models.F("index")), name="riskstate_peak_at_least_index"
            ),
            models.CheckConstraint(
                condition=Q(size_multiplier__gt=0) & Q(size_multiplier__lte=1),
                name="riskstate_multiplier_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(halted=False) | ~Q(halt_reason=""), name="riskstate_halt_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"risk state v{self.version} ({'HALTED' if self.halted else 'trading'})"


class RiskSnapshot(models.Model):
    class Reason(models.TextChoices):
        PERIODIC = "periodic", "periodic"
        CHANGE = "change", "on change"
        MANUAL = "manual", "manual"
        RESTORE = "restore", "after a restore"

    state = models.JSONField()
    checksum = models.CharField(max_length=64)
    state_version = models.PositiveBigIntegerField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.TextField(blank=True)
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at", "-id"], name="risksnapshot_newest")]

    def __str__(self) -> str:
        return f"snapshot #{self.pk} ({self.reason}) of v{self.state_version}"


class AutotuneEvent(models.Model):
    inputs = models.JSONField()
    old_multiplier = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    new_multiplier = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    old_limits = models.JSONField()
    new_limits = models.JSONField()
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"autotune {self.old_multiplier} -> {self.new_multiplier}"
