"""JSON for every table and chart of the Risk tab: the same selectors the page renders
(``risk.dashboard``), so the page, its live refreshes and API clients always agree.

The serializers only describe (and render) the selectors' output for the OpenAPI schema:
numbers are exact decimals as plain strings ("1000", "0.05"), times ISO 8601 in UTC.
Included under ``/api/v1/`` (``tradingsite.api_urls``).
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework import serializers
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
from risk.models import RiskSnapshot

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


urlpatterns = [
    path("risk/limits/", RiskLimits.as_view(), name="api-risk-limits"),
    path("risk/autotune/", RiskAutotune.as_view(), name="api-risk-autotune"),
    path("risk/refusals/", RiskRefusals.as_view(), name="api-risk-refusals"),
    path("risk/snapshots/", RiskSnapshots.as_view(), name="api-risk-snapshots"),
]
