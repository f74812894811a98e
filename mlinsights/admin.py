from __future__ import annotations

from typing import Any

from celery import current_app
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from mlinsights.models import InsightCache, MLConfig, ModelVersion, Prediction
from mlinsights.services import model_promote, model_retire, promotion_check
from tradingsite.accounts import is_operator
from tradingsite.admin_actions import OperatorAdminMixin, ReadOnlyAdmin, confirmed_action
from tradingsite.display import NO_VALUE


def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


@confirmed_action(
    name="model_promote",
    title="Promote to the active model",
    explanation="Only a shadow model whose live Brier score beats the active model's on the same "
    "predictions by the configured margin is promoted; the active model is retired.",
)
def model_promote_action(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    if queryset.count() != 1:
        raise ValueError("select exactly one model to promote")
    version = queryset.get()
    model_promote(version, actor=f"{_actor(request)} ({reason})")
    return f"Model v{version.version} is now active."


@confirmed_action(
    name="model_retire",
    title="Retire these models",
    explanation="A retired model is no longer scored; an active one stops trading at once (the "
    "ML source has no model until another is promoted).",
)
def model_retire_action(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    retired = []
    for version in queryset.exclude(state=ModelVersion.State.RETIRED):
        model_retire(version, actor=_actor(request), reason=reason)
        retired.append(f"v{version.version}")
    return f"Retired: {', '.join(retired) or 'nothing (already retired)'}."


@confirmed_action(
    name="model_retrain",
    title="Retrain now (a new shadow model)",
    explanation="Queues the retrain on the ML queue with these settings; the new model appears "
    "in shadow when it is done (one training at a time).",
)
def model_retrain_action(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    try:
        current_app.send_task("mlinsights.tasks.model_retrain_task", queue="ml", retry=False)
    except Exception as error:  # the broker is down: say so, nothing was queued
        raise RuntimeError(f"the retrain could not be queued ({error}); try again") from None
    return "Retrain queued on the ML queue."


@admin.register(MLConfig)
class MLConfigAdmin(OperatorAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]
    list_display = [
        "__str__",
        "algorithm",
        "horizon_bars",
        "training_days",
        "folds",
        "promotion_margin",
        "promotion_min_samples",
        "auto_promote",
        "updated_at",
    ]
    actions = [model_retrain_action]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user) and not MLConfig.objects.exists()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(OperatorAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]
    list_display = [
        "version",
        "state",
        "algorithm",
        "horizon_bars",
        "train_start",
        "train_end",
        "rows",
        "oos_auc",
        "oos_brier",
        "promotion",
        "created_at",
    ]
    list_filter = ["state", "algorithm"]
    actions = [model_promote_action, model_retire_action]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="AUC (walk-forward)")
    def oos_auc(self, obj: ModelVersion) -> str:
        auc = obj.metrics.get("auc")
        return NO_VALUE if auc is None else f"{auc:.4f}"

    @admin.display(description="Brier (walk-forward)")
    def oos_brier(self, obj: ModelVersion) -> str:
        return f"{obj.metrics['brier']:.4f}"

    @admin.display(description="promotion rule (live)")
    def promotion(self, obj: ModelVersion) -> str:
        if obj.state != ModelVersion.State.SHADOW:
            return obj.state_reason
        check = promotion_check(obj)
        return ("passes " if check.passes else "not yet: ") + check.reason


@admin.register(Prediction)
class PredictionAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = [
        "as_of",
        "symbol",
        "model_version",
        "probability",
        "outcome",
        "outcome_return",
        "latency_ms",
    ]
    list_filter = ["symbol", "model_version"]
    list_select_related = ["model_version"]
    date_hierarchy = "as_of"


@admin.register(InsightCache)
class InsightCacheAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["model_version", "computed_at"]
