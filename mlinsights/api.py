"""JSON for the ML Insights tab and API clients: the same selectors the page renders
(``mlinsights.dashboard``), so both always show the same text for the same number.

Mounted under ``/api/v1/ml/`` (``tradingsite.api_urls``); read-only, login (session or token)
required.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mlinsights.dashboard import (
    ml_insights,
    ml_insights_missing,
    ml_models,
    ml_predictions_recent,
)
from mlinsights.models import ModelVersion
from mlinsights.services import ModelStateInvalid, model_promote
from mlinsights.tasks import model_retrain_task
from tradingsite.api import task_accepted
from tradingsite.api_policy import Conflict

OBJECT = OpenApiTypes.OBJECT
LIST = {200: {"type": "array", "items": {"type": "object"}}}
NOT_FOUND = {404: {"type": "object", "properties": {"detail": {"type": "string"}}}}


class RecentQuerySerializer(serializers.Serializer[Any]):
    """The filters of ``/ml/predictions/recent/``."""

    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Only this model version's predictions."
    )
    symbol = serializers.CharField(
        required=False, max_length=30, help_text="Only this traded symbol's (e.g. BTCUSDT)."
    )

    def validate_version(self, value: int) -> int:
        if not ModelVersion.objects.filter(version=value).exists():
            raise serializers.ValidationError(f"there is no model v{value}")
        return value

    def validate_symbol(self, value: str) -> str:
        symbol = value.strip().upper()
        if symbol not in settings.SYMBOLS:
            raise serializers.ValidationError(
                f"{value!r} is not traded: one of {', '.join(settings.SYMBOLS)}"
            )
        return symbol


class _ReadOnly(APIView):
    """Read-only: the default ``RolePermission`` lets viewers and operators in."""


def _insights(version: int | None) -> Response:
    insights = ml_insights(version)
    if insights is None:
        return Response({"detail": ml_insights_missing(version)}, status=status.HTTP_404_NOT_FOUND)
    return Response(insights)


class MLInsights(_ReadOnly):
    """The default model's ML insights (the active model, else the newest shadow one) as last
    computed: live and walk-forward scores, calibration, rolling hit rate and Brier, feature
    importance, drift, recent predictions, the promotion rule (shadow models) and stale
    predictions per symbol. 404 when there is no model or its insights are not computed yet
    (the detail says which and what to do)."""

    @extend_schema(operation_id="ml_insights_default", responses={200: OBJECT, **NOT_FOUND})
    def get(self, request: Request) -> Response:
        return _insights(None)


class MLInsightsOfVersion(_ReadOnly):
    """One model version's ML insights, in the shape of the default model's. 404 when there
    is no such model or its insights are not computed yet."""

    @extend_schema(
        operation_id="ml_insights_of_version",
        responses={200: OBJECT, **NOT_FOUND},
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH)],
    )
    def get(self, request: Request, version: int) -> Response:
        return _insights(version)


class MLModels(_ReadOnly):
    """The model registry, newest first (active and shadow models always listed), with each
    version's walk-forward AUC and Brier score."""

    @extend_schema(responses=LIST)
    def get(self, request: Request) -> Response:
        return Response(ml_models())


class RecentPredictions(_ReadOnly):
    """The newest predictions, read now (of one version and/or symbol when given)."""

    @extend_schema(responses=LIST, parameters=[RecentQuerySerializer])
    def get(self, request: Request) -> Response:
        query = RecentQuerySerializer(data=request.query_params)
        if not query.is_valid():
            return Response(query.errors, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            ml_predictions_recent(
                version=query.validated_data.get("version"),
                symbol=query.validated_data.get("symbol"),
            )
        )


class ModelPromote(APIView):
    """Promote a shadow model to active by the promotion rule (the same as the admin's): 409
    with the reason when it does not pass, 404 when there is no such version. Operator role."""

    @extend_schema(
        operation_id="ml_model_promote", request=None, responses={200: OBJECT, **NOT_FOUND}
    )
    def post(self, request: Request, version: int) -> Response:
        model = ModelVersion.objects.filter(version=version).first()
        if model is None:
            return Response({"detail": f"there is no model v{version}"}, status=404)
        try:
            model_promote(model, actor=f"{request.user.get_username()} (API)")
        except ModelStateInvalid as error:
            raise Conflict(str(error)) from None
        model.refresh_from_db()
        return Response({"detail": f"v{model.version} is active.", "state": model.state})


class ModelTrain(APIView):
    """Train a new shadow model now from the last ``training_days`` of bars (what the daily
    retrain does), on the ML queue. 202 with the task id to poll at /api/v1/tasks/<id>/; its
    result names the new version. Operator role."""

    @extend_schema(operation_id="ml_train", request=None, responses={202: OBJECT})
    def post(self, request: Request) -> Response:
        result = model_retrain_task.delay()
        return task_accepted(result.id)


urlpatterns = [
    path("models/<int:version>/promote/", ModelPromote.as_view(), name="api-ml-promote"),
    path("train/", ModelTrain.as_view(), name="api-ml-train"),
    path("insights/", MLInsights.as_view(), name="api-ml-insights"),
    path("insights/<int:version>/", MLInsightsOfVersion.as_view(), name="api-ml-insights-version"),
    path("models/", MLModels.as_view(), name="api-ml-models"),
    path("predictions/recent/", RecentPredictions.as_view(), name="api-ml-predictions-recent"),
]
