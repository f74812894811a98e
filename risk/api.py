"""JSON for every table and chart of the Risk tab: the same selectors the page renders
(``risk.dashboard``), so the page, its live refreshes and API clients always agree.

The serializers only describe (and render) the selectors' output for the OpenAPI schema:
numbers are exact decimals as plain strings ("1000", "0.05"), times ISO 8601 in UTC.
Included under ``/api/v1/`` (``tradingsite.api_urls``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from risk.dashboard import (
    autotune_events_recent,
    autotune_multiplier_series,
    limits_compared,
    refusals_recent,
    snapshots_recent,
)
from risk.models import RiskLimit, RiskSnapshot
from risk.services import LIMIT_FIELDS, limits_write
from tradingsite.decimals import DECIMAL_PLACES, MAX_DIGITS

DECIMAL = "An exact decimal as a plain string, e.g. 1000 or 0.05."


def _decimal(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(help_text=kwargs.pop("help_text", DECIMAL), **kwargs)


class LimitOverrideSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField()
    configured = _decimal(allow_null=True, help_text="Null: the symbol inherits the global value.")
    effective = _decimal(allow_null=True, help_text="Null while there is no risk state.")


class LimitRowSerializer(serializers.Serializer[Any]):
    field = serializers.CharField(help_text="The limit's name, e.g. max_order_notional.")
    # DRF pops declared fields off the class, so a field may share a Field attribute's name.
    label = serializers.CharField()  # type: ignore[assignment]
    unit = serializers.CharField()
    scaled = serializers.BooleanField(help_text="A size limit the autotuner scales down.")
    account_wide = serializers.BooleanField(help_text="Set on the global row only.")
    configured = _decimal(help_text="The global value (seconds for loss_streak_cooldown).")
    effective = _decimal(allow_null=True, help_text="In force now; null without a risk state.")
    overrides = LimitOverrideSerializer(many=True)


class RiskLimitsSerializer(serializers.Serializer[Any]):
    configured = serializers.BooleanField(help_text="The global limits exist and are complete.")
    problem = serializers.CharField(help_text="What to fix when not configured.")
    kill_switch = serializers.BooleanField()
    size_multiplier = _decimal(allow_null=True)
    halted = serializers.BooleanField(allow_null=True)
    halt_reason = serializers.CharField()
    state_version = serializers.IntegerField(allow_null=True)
    state_checksum_ok = serializers.BooleanField(allow_null=True)
    state_updated_at = serializers.DateTimeField(allow_null=True)
    symbols = serializers.ListField(child=serializers.CharField(), help_text="Override columns.")
    more_symbols = serializers.BooleanField(help_text="More overrides exist than are listed.")
    rows = LimitRowSerializer(many=True)


class AutotuneInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    value = serializers.CharField()


class AutotuneEventSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    old_multiplier = _decimal()
    new_multiplier = _decimal()
    reason = serializers.CharField()
    inputs = AutotuneInputSerializer(many=True)


class AutotuneSeriesSerializer(serializers.Serializer[Any]):
    points = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2),
        help_text="[time, multiplier] pairs, oldest first (a step line).",
    )


class RiskAutotuneSerializer(serializers.Serializer[Any]):
    events = AutotuneEventSerializer(many=True, help_text="Newest first.")
    series = AutotuneSeriesSerializer()


class RefusalSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    at = serializers.DateTimeField(help_text="When the signal was made.")
    source = serializers.CharField()  # type: ignore[assignment]  # a field, as "label" above
    symbol = serializers.CharField()
    side = serializers.CharField()
    risk_code = serializers.CharField(help_text="The limit that refused it.")
    risk_reason = serializers.CharField(help_text="The limit and the numbers.")


class SnapshotSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    reason = serializers.ChoiceField(choices=RiskSnapshot.Reason.choices)
    reason_label = serializers.CharField()
    state_version = serializers.IntegerField()
    nav = _decimal(allow_null=True)
    size_multiplier = _decimal(allow_null=True)
    halted = serializers.BooleanField(allow_null=True)
    checksum = serializers.CharField()
    checksum_ok = serializers.BooleanField(help_text="Only a valid snapshot is ever restored.")
    actor = serializers.CharField()
    note = serializers.CharField()


class _ReadOnly(APIView):
    """Read-only: the default ``RolePermission`` lets viewers and operators in."""


class RiskLimits(_ReadOnly):
    """Configured (global) vs effective limits, per-symbol overrides, the size multiplier and
    the kill switch."""

    serializer_class = RiskLimitsSerializer

    def get(self, request: Request) -> Response:
        return Response(RiskLimitsSerializer(limits_compared()).data)


class RiskAutotune(_ReadOnly):
    """The newest autotune events (newest first) and the size multiplier over time."""

    serializer_class = RiskAutotuneSerializer

    def get(self, request: Request) -> Response:
        data = {"events": autotune_events_recent(), "series": autotune_multiplier_series()}
        return Response(RiskAutotuneSerializer(data).data)


class RiskRefusals(_ReadOnly):
    """The newest signals the pre-trade checks refused, with the limit and the numbers."""

    serializer_class = RefusalSerializer(many=True)

    def get(self, request: Request) -> Response:
        return Response(RefusalSerializer(refusals_recent(), many=True).data)


class RiskSnapshots(_ReadOnly):
    """The newest risk snapshots, each with whether its checksum holds."""

    serializer_class = SnapshotSerializer(many=True)

    def get(self, request: Request) -> Response:
        return Response(SnapshotSerializer(snapshots_recent(), many=True).data)


# --- writes (operator role) -----------------------------------------------------------------

GLOBAL_TARGET = "global"
REASON = "Why (recorded in the limits' history with who changed what)."


def _limit_field(name: str) -> serializers.Field[Any, Any, Any, Any]:
    model_field = RiskLimit._meta.get_field(name)
    help_text = str(getattr(model_field, "help_text", "")) or None
    if isinstance(model_field, models.DecimalField):
        return serializers.DecimalField(
            max_digits=MAX_DIGITS,
            decimal_places=DECIMAL_PLACES,
            required=False,
            allow_null=True,
            help_text=help_text,
        )
    return serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text=help_text
    )


class LimitsWriteInput(serializers.Serializer[Any]):
    """Any subset of the limits (exact decimals as strings), and why. Null clears a symbol's
    override (the global value applies again); the global row must keep every limit."""

    reason = serializers.CharField(max_length=500, help_text=REASON)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        fields.update({name: _limit_field(name) for name in LIMIT_FIELDS})
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - {"reason", *LIMIT_FIELDS})
        if unknown:
            raise serializers.ValidationError(
                {name: ["Not a limit that can be written."] for name in unknown}
            )
        if not set(attrs) - {"reason"}:
            raise serializers.ValidationError({"non_field_errors": ["Say which limits change."]})
        return attrs


class LimitsWrite(APIView):
    """Change the global limits (``/risk/limits/global/``) or one traded symbol's overrides
    (``/risk/limits/BTCUSDT/``, created when missing): validated as in the admin (400 with
    field messages, nothing changed), recorded in the limits' history with who and why.
    Operator role."""

    @extend_schema(
        operation_id="risk_limits_write",
        request=LimitsWriteInput,
        responses={200: OpenApiTypes.OBJECT},
    )
    def patch(self, request: Request, target: str) -> Response:
        symbol = "" if target == GLOBAL_TARGET else target
        if symbol and symbol not in settings.SYMBOLS:
            raise serializers.ValidationError(
                {"symbol": [f"{target!r} is not traded: one of {', '.join(settings.SYMBOLS)}"]}
            )
        given = LimitsWriteInput(data=request.data)
        given.is_valid(raise_exception=True)
        changes = {k: v for k, v in given.validated_data.items() if k != "reason"}
        try:
            row, created = limits_write(
                symbol=symbol,
                changes=changes,
                actor=f"{request.user.get_username()} (API)",
                reason=given.validated_data["reason"],
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return Response(
            {
                "symbol": row.symbol or GLOBAL_TARGET,
                "created": created,
                "limits": {
                    name: None if getattr(row, name) is None else str(getattr(row, name))
                    for name in LIMIT_FIELDS
                },
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


urlpatterns = [
    path("risk/limits/", RiskLimits.as_view(), name="api-risk-limits"),
    path("risk/limits/<str:target>/", LimitsWrite.as_view(), name="api-risk-limits-write"),
    path("risk/autotune/", RiskAutotune.as_view(), name="api-risk-autotune"),
    path("risk/refusals/", RiskRefusals.as_view(), name="api-risk-refusals"),
    path("risk/snapshots/", RiskSnapshots.as_view(), name="api-risk-snapshots"),
]
