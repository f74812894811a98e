"""The model registry, its settings, predictions and the cached insights.

A ``ModelVersion`` is one trained pipeline: its artifact (a joblib file under ``MODEL_DIR``,
named by version and checked against its SHA-256 before every load), what it was trained on
and how it scored out of sample. It starts in **shadow** (scored and tracked, never traded);
only the **active** one (at most one) feeds the ML signal source; **retired** ones are kept for
the record. Every state change is in the history (who, when, why).
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from mlinsights.training import ALGORITHMS
from tradingsite.decimals import DECIMAL_PLACES, MAX_DIGITS


class MLConfig(models.Model):
    """The ML settings operators tune in the admin (one row, created on first use)."""

    algorithm = models.CharField(
        max_length=32,
        choices=[(name, name.replace("_", " ")) for name in ALGORITHMS],
        default="logistic_regression",
        help_text="Logistic regression is fast and well calibrated; gradient boosting can find "
        "interactions but needs more bars to be calibrated as well.",
    )
    horizon_bars = models.PositiveSmallIntegerField(
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(1440)],
        help_text="The label: does the close rise over this many 1m bars?",
    )
    training_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days of stored bars a scheduled retrain learns from.",
    )
    folds = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    promotion_margin = models.FloatField(
        default=0.001,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.25)],
        help_text="How much lower a shadow model's live Brier score must be to replace the "
        "active model (or, with none active, the training window's base rate), on the same "
        "predictions.",
    )
    promotion_min_samples = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(10)],
        help_text="Independent resolved outcomes (one per horizon and symbol) both models share "
        "before a promotion can be decided.",
    )
    auto_promote = models.BooleanField(
        default=True, help_text="Promote a shadow model as soon as it passes the rule."
    )
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "ML settings"
        verbose_name_plural = "ML settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="mlconfig_single_row"),
            models.CheckConstraint(condition=Q(horizon_bars__gte=1), name="mlconfig_horizon"),
            models.CheckConstraint(condition=Q(folds__gte=1), name="mlconfig_folds"),
            models.CheckConstraint(
                condition=Q(promotion_margin__gte=0) & Q(promotion_margin__lte=0.25),
                name="mlconfig_margin",
            ),
            models.CheckConstraint(
                condition=Q(promotion_min_samples__gte=10), name="mlconfig_min_samples"
            ),
        ]

    def __str__(self) -> str:
        return f"ML settings ({self.algorithm}, {self.horizon_bars}-bar horizon)"


class ModelVersion(models.Model):
    class State(models.TextChoices):
        SHADOW = "shadow", "shadow"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=32)
    params = models.JSONField(default=dict, help_text="Pipeline and training settings.")
    features = models.JSONField(help_text="Feature names, in the order the model takes them.")
    symbols = models.JSONField(help_text="Symbols whose bars it was trained on.")
    interval = models.CharField(max_length=8, default="1m")
    horizon_bars = models.PositiveSmallIntegerField()
    train_start = models.DateTimeField()
    train_end = models.DateTimeField()
    rows = models.PositiveIntegerField(help_text="Training rows (bars with features and label).")
    metrics = models.JSONField(help_text="Walk-forward out-of-sample metrics.")
    feature_importance = models.JSONField(default=dict)
    drift_reference = models.JSONField(
        default=dict, help_text="Per-feature bins of the training rows (for live drift)."
    )
    artifact = models.CharField(max_length=255, help_text="File name under MODEL_DIR.")
    artifact_sha256 = models.CharField(max_length=64)
    training_seconds = models.FloatField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.SHADOW)
    state_reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="active"), name="modelversion_one_active"
            ),
            models.CheckConstraint(
                condition=Q(train_end__gt=models.F("train_start")),
                name="modelversion_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"model v{self.version} ({self.algorithm}, {self.state})"


class Prediction(models.Model):
    """One model's probability that ``symbol``'s close rises over ``horizon_bars`` from the bar
    closed at ``as_of``; ``outcome`` is filled in once the horizon has passed."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions"
    )
    symbol = models.CharField(max_length=30)
    as_of = models.DateTimeField(help_text="Close time of the last bar the features used.")
    horizon_bars = models.PositiveSmallIntegerField()
    probability = models.FloatField()
    close = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    features = models.JSONField(help_text="The feature row scored (for drift).")
    requested_at = models.DateTimeField()
    scored_at = models.DateTimeField()
    latency_ms = models.FloatField(help_text="From the executor's request to the stored row.")
    stale = models.BooleanField(
        default=False,
        help_text="The ML source found it too old to trade on when it was the newest (ignored).",
    )
    outcome = models.FloatField(null=True, blank=True, help_text="1 the close rose, 0 it did not.")
    outcome_return = models.FloatField(null=True, blank=True, help_text="Log return realised.")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-as_of", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "symbol", "as_of"], name="prediction_one_per_bar"
            ),
            models.CheckConstraint(
                condition=Q(probability__gte=0) & Q(probability__lte=1),
                name="prediction_probability_unit",
            ),
            models.CheckConstraint(
                condition=Q(outcome__isnull=True) | Q(outcome__in=[0.0, 1.0]),
                name="prediction_outcome_binary",
            ),
        ]
        indexes = [
            models.Index(fields=["symbol", "model_version", "-as_of"], name="prediction_latest"),
            models.Index(fields=["resolved_at", "as_of"], name="prediction_unresolved"),
        ]

    def __str__(self) -> str:
        when = f"{self.as_of:%Y-%m-%d %H:%M}"
        return f"v{self.model_version_id} {self.symbol} @ {when} p={self.probability:.3f}"


class InsightCache(models.Model):
    """The ML Insights aggregates of one model version, as last computed (page, API, pushes)."""

    model_version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, related_name="insights"
    )
    data = models.JSONField()
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"insights of v{self.model_version_id} at {self.computed_at:%Y-%m-%d %H:%M}"
