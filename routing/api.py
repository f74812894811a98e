"""JSON for every table and chart of the Overview and Router Health tabs: the same selectors
the pages render (``routing.dashboard``, ``routing.health``), so both always agree."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing.api_records import SignalList
from routing.dashboard import (
    last_ticks,
    operator_flatten,
    operator_kill_switch,
    operator_unhalt,
    positions_with_stops,
    risk_status,
    trading_status,
)
from routing.health import (
    WINDOW_KEYS,
    nav_curve_summary,
    recent_fills,
    router_health_curves,
    router_health_summary,
)
from routing.models import ReplayRun, Side
from routing.replay import ReplayInvalid
from routing.replay_dashboard import MAX_ID, replay_done, replay_scope
from routing.signal_services import SignalInvalid, signal_submit
from tradingsite.api import task_accepted

WINDOW = OpenApiParameter("window", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(WINDOW_KEYS))
OBJECT = extend_schema(responses=OpenApiTypes.OBJECT)


class ReplayQuery(serializers.Serializer[Any]):
    """``?run=``: a done replay's figures (read in its own database) instead of live's."""

    run = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="A done replay's id: that run's figures instead of live's.",
    )

    def validate_run(self, value: int) -> ReplayRun:
        try:
            return replay_done(value)
        except ReplayInvalid as error:
            raise ValidationError(error.message) from None


def _replay(request: Request) -> ReplayRun | None:
    """The replay ``?run=`` names (400 for an unknown or unfinished one), else None: live."""
    query = ReplayQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    run: ReplayRun | None = query.validated_data.get("run")
    return run


WINDOWED = extend_schema(responses=OpenApiTypes.OBJECT, parameters=[WINDOW, ReplayQuery])
REPLAYABLE = extend_schema(responses=OpenApiTypes.OBJECT, parameters=[ReplayQuery])
LIST = extend_schema(responses={200: {"type": "array", "items": {"type": "object"}}})

NOT_COMPUTED = {"detail": "not computed yet: the router health refresh has not run"}


class _ReadOnly(APIView):
    """Read-only: the default ``RolePermission`` lets viewers and operators in."""


def _summary(window: str) -> dict[str, Any] | Response:
    if window not in WINDOW_KEYS:
        return Response(
            {"window": [f"unknown window {window!r}: one of {', '.join(WINDOW_KEYS)}"]},
            status=status.HTTP_400_BAD_REQUEST,
        )
    summary = router_health_summary(window)
    if summary is None:
        return Response(NOT_COMPUTED, status=status.HTTP_404_NOT_FOUND)
    return summary


class RouterHealthTables(_ReadOnly):
    """Per signal source, per symbol and overall metrics of a window (24h, 7d, 30d, all);
    with ``?run=``, a done replay's (its windows end at the replay's end)."""

    @WINDOWED
    def get(self, request: Request, window: str) -> Response:
        with replay_scope(_replay(request)):
            summary = _summary(window)
        if isinstance(summary, Response):
            return summary
        return Response(summary)


class RouterHealthCurves(_ReadOnly):
    """Cumulative PnL and hit-rate curves per signal source and per symbol of a window;
    with ``?run=``, a done replay's."""

    @WINDOWED
    def get(self, request: Request, window: str) -> Response:
        with replay_scope(_replay(request)):
            summary = _summary(window)
            if isinstance(summary, Response):
                return summary
            curves = router_health_curves(window) or {}
        return Response({"window": window, "computed_at": summary["computed_at"], **curves})


class NavCurve(_ReadOnly):
    """Rolling NAV with its drawdown (time-weighted: cash flows are not performance); with
    ``?run=``, a done replay's."""

    @REPLAYABLE
    def get(self, request: Request) -> Response:
        with replay_scope(_replay(request)):
            curve = nav_curve_summary()
        if curve is None:
            return Response(NOT_COMPUTED, status=status.HTTP_404_NOT_FOUND)
        return Response(curve)


class Positions(_ReadOnly):
    """Open positions with their protective stops."""

    @LIST
    def get(self, request: Request) -> Response:
        return Response(positions_with_stops())


class RecentFills(_ReadOnly):
    """The last fills, as each signal source's share."""

    @LIST
    def get(self, request: Request) -> Response:
        return Response(recent_fills())


class TradingStatus(_ReadOnly):
    """Halted or not (and why), the kill switch, and the risk state's headline numbers."""

    @OBJECT
    def get(self, request: Request) -> Response:
        return Response({**trading_status(), "risk": risk_status()})


class LastTicks(_ReadOnly):
    """The executor's last ticks."""

    @LIST
    def get(self, request: Request) -> Response:
        return Response(last_ticks())


# --- operations: writes, operator role (RolePermission), audited ------------------------------

REASON_HELP = "Why (recorded with the change and in the admin's log)."


class KillSwitchInput(serializers.Serializer[Any]):
    on = serializers.BooleanField(help_text="true switches trading off, false back on.")
    reason = serializers.CharField(max_length=500, help_text=REASON_HELP)


class UnhaltInput(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=500, help_text=REASON_HELP)
    rebase = serializers.BooleanField(
        default=False, help_text="Accept the loss that caused the halt as the new baseline."
    )


class FlattenInput(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=500, help_text=REASON_HELP)


def _input(serializer: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    data = serializer(data=request.data)
    data.is_valid(raise_exception=True)
    validated: dict[str, Any] = data.validated_data
    return validated


class KillSwitch(APIView):
    """Switch the kill switch on (no new entries anywhere) or off. Operator role."""

    @extend_schema(
        operation_id="kill_switch_set",
        request=KillSwitchInput,
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        given = _input(KillSwitchInput, request)
        detail = operator_kill_switch(
            user=request.user, on=given["on"], reason=given["reason"], via="API"
        )
        return Response({"detail": detail, "kill_switch": given["on"]})


class Unhalt(APIView):
    """Lift the account's halt; 409 when trading is not halted. Operator role."""

    @extend_schema(
        operation_id="risk_unhalt", request=UnhaltInput, responses={200: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request) -> Response:
        given = _input(UnhaltInput, request)
        row = operator_unhalt(
            user=request.user, reason=given["reason"], rebase=given["rebase"], via="API"
        )
        return Response(
            {"detail": "Trading resumed.", "halted": row.halted, "version": row.version}
        )


class Flatten(APIView):
    """Cancel open entries and close every position (queued on the executor; runs between
    ticks). 202 with the task id to poll at /api/v1/tasks/<id>/. Operator role."""

    @extend_schema(
        operation_id="flatten", request=FlattenInput, responses={202: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request) -> Response:
        given = _input(FlattenInput, request)
        task_id = operator_flatten(user=request.user, reason=given["reason"], via="API")
        return task_accepted(task_id)


class SignalInput(serializers.Serializer[Any]):
    symbol = serializers.CharField(max_length=30, help_text="A traded symbol, e.g. BTCUSDT.")
    side = serializers.ChoiceField(choices=Side.choices)
    strength = serializers.DecimalField(
        max_digits=12,
        decimal_places=8,
        min_value=Decimal(0),
        max_value=Decimal(1),
        help_text='Conviction in [0, 1]; a string ("0.25") keeps it exact.',
    )
    # DRF pops declared fields off the class, so a field may share a Field attribute's name.
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=64, help_text="Your source's name (a-z, 0-9, _ . -), not a built-in one."
    )


class SignalSubmit(SignalList):
    """GET: the signals, newest first (cursor pages; filters symbol, source, status, since,
    until). POST: submit an external signal, traded by the next tick (or expired after five
    minutes), sized and checked like every other signal (operator role)."""

    @extend_schema(
        operation_id="signal_submit", request=SignalInput, responses={201: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request) -> Response:
        given = _input(SignalInput, request)
        try:
            signal = signal_submit(
                symbol=given["symbol"],
                side=given["side"],
                strength=given["strength"],
                source=given["source"],
            )
        except SignalInvalid as error:
            raise ValidationError({error.field: [str(error)]}) from None
        return Response(
            {
                "id": signal.pk,
                "created_at": signal.created_at.isoformat(),
                "symbol": signal.symbol,
                "side": signal.side,
                "strength": str(signal.strength),
                "source": signal.source,
                "status": signal.status,
            },
            status=status.HTTP_201_CREATED,
        )
