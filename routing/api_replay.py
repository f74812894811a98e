"""Replays through the API (``/api/v1/replays/``): list and start runs, one run with its
router health, stop and resume, and the live-vs-replay divergence report (JSON or CSV).

Reading needs the viewer role, the rest the operator role (``RolePermission``). A request that
cannot run is a 400 naming the field (nothing is recorded); an action the run's status does
not allow (stopping a done run, the report of an unfinished one) is a 409.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing.divergence import CAUSES, CSV_COLUMNS, divergence_report
from routing.models import ReplayRun
from routing.records import csv_lines
from routing.replay import ReplayInvalid, replay_as_dict
from routing.replay_dashboard import (
    MAX_ID,
    ReplayNotQueued,
    operator_replay_delete,
    operator_replay_resume,
    operator_replay_start,
    operator_replay_stop,
    replay_detail,
    replay_done,
    replay_url,
)
from tradingsite.api import NewestFirst
from tradingsite.api_policy import Conflict

SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
MAX_SYMBOLS = 20

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.INT, OpenApiParameter.PATH)
DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
}
NOT_FOUND = {404: OpenApiResponse(DETAIL, description="No such replay.")}
NOT_QUEUED = {
    503: OpenApiResponse(DETAIL, description="Recorded, but the broker is unreachable: resume it.")
}
CONFLICT = {409: OpenApiResponse(DETAIL, description="The run's status does not allow it.")}


# --- input -------------------------------------------------------------------------------


class ZonedDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its zone (a time without one is refused, not guessed)."""

    default_error_messages = {
        "naive": "Give a time zone (UTC), e.g. 2026-01-01T00:00:00Z.",
    }

    def to_internal_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # out of range: the parent says so
            if parsed is not None and timezone.is_naive(parsed):
                self.fail("naive")
        return super().to_internal_value(value)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
            {"type": "string"},
        ],
        "description": 'Symbols to replay: a list, or comma-separated ("BTCUSDT,ETHUSDT").',
    }
)
class SymbolsField(serializers.Field):  # type: ignore[type-arg]
    """A list of symbols, or one comma-separated string of them."""

    default_error_messages = {
        "invalid": "Give a list of symbols or a comma-separated string.",
        "empty": "Name at least one symbol.",
        "too_many": f"At most {MAX_SYMBOLS} symbols per run.",
        "symbol": "{symbol!r} is not a futures symbol such as BTCUSDT.",
    }

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):
            items: Sequence[Any] = data.split(",")
        elif isinstance(data, list):
            items = data
        else:
            self.fail("invalid")
        if not all(isinstance(item, str) for item in items):
            self.fail("invalid")
        symbols = [item.strip().upper() for item in items if item.strip()]
        if not symbols:
            self.fail("empty")
        if len(symbols) > MAX_SYMBOLS:
            self.fail("too_many")
        for symbol in symbols:
            if not SYMBOL.fullmatch(symbol):
                self.fail("symbol", symbol=symbol[:40])
        return symbols

    def to_representation(self, value: Any) -> list[str]:
        return list(value)


class ReplayStartSerializer(serializers.Serializer[Any]):
    """What to replay (the dashboard's form is read with it too)."""

    start = ZonedDateTimeField(help_text="First bar close replayed (ISO 8601 with a zone).")
    end = ZonedDateTimeField(help_text="Last bar close replayed (ISO 8601 with a zone).")
    symbols = SymbolsField()
    initial_nav = serializers.DecimalField(
        max_digits=None,  # kept as given; ``replay_create`` says what it must be
        decimal_places=None,
        required=False,
        allow_null=True,
        help_text="Starting NAV in USDT (default: live's NAV at the start, else 10000).",
    )
    slippage_bps = serializers.DecimalField(
        max_digits=None,
        decimal_places=None,
        required=False,
        allow_null=True,
        help_text="Paper fill slippage in basis points (default 2).",
    )


# --- output (documentation of what ``replay_as_dict`` gives) -------------------------------


class ReplayRunSerializer(serializers.Serializer[ReplayRun]):
    """A replay run as pages, pushes and the API show it (``routing.replay.replay_as_dict``)."""

    id = serializers.IntegerField()
    url = serializers.CharField(help_text="This run in the API.")
    symbols = serializers.ListField(child=serializers.CharField())
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=ReplayRun.Status.choices)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    bars_total = serializers.IntegerField()
    bars_done = serializers.IntegerField()
    progress = serializers.FloatField(help_text="bars_done / bars_total, in [0, 1].")
    cursor = serializers.DateTimeField(allow_null=True, help_text="Last bar close decided on.")
    bars_per_second = serializers.FloatField()
    settings = serializers.DictField(help_text="Starting NAV, fees and slippage.")
    summary = serializers.DictField(help_text="Signals, orders, fills, final NAV and PnL.")
    error = serializers.CharField()
    stop_requested = serializers.BooleanField()

    def to_representation(self, instance: ReplayRun) -> dict[str, Any]:
        return {**replay_as_dict(instance), "url": replay_url(instance)}


class ReplayDetailSerializer(ReplayRunSerializer):
    router_health = serializers.DictField(
        allow_null=True,
        help_text="Router health over the run's whole period (its own database), as "
        "/api/v1/router-health/all/ gives live's; null until the run is done.",
    )
    note = serializers.CharField(help_text="Why router_health is null (else empty).")


class ReplayCauseSerializer(serializers.Serializer[Any]):
    pnl = serializers.CharField(help_text="This cause's part of the gap (USDT).")
    share = serializers.FloatField(allow_null=True, help_text="pnl / gap (null when no gap).")


class ReplayDivergenceSerializer(serializers.Serializer[Any]):
    """Why live trading differed from the replay over the run's period."""

    run = serializers.IntegerField()
    live_trading = serializers.BooleanField(help_text="Whether live traded in the period.")
    marks = serializers.DictField(child=serializers.CharField(), help_text="Last close per symbol.")
    live_pnl = serializers.CharField()
    replay_pnl = serializers.CharField()
    gap = serializers.CharField(help_text="replay_pnl - live_pnl; the causes add up to it.")
    causes = serializers.DictField(
        child=ReplayCauseSerializer(), help_text=f"By cause: {', '.join(CAUSES)}."
    )
    counts = serializers.DictField(child=serializers.IntegerField())
    trades = serializers.ListField(
        child=serializers.DictField(), help_text="Decision by decision (the CSV's columns)."
    )


# --- views -------------------------------------------------------------------------------


def _run(run_id: int) -> ReplayRun:
    if not 0 < run_id <= MAX_ID:  # never a lookup the column cannot hold
        raise Http404(f"there is no replay {run_id}")
    return get_object_or_404(ReplayRun, pk=run_id)


def _done(run: ReplayRun) -> ReplayRun:
    try:
        return replay_done(run.pk)
    except ReplayInvalid as error:
        raise Conflict(error.message) from None


def _not_queued(error: ReplayNotQueued) -> Response:
    """503: the run is recorded (interrupted, at ``Location``) but its task is not queued."""
    response = Response({"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Location"] = replay_url(error.run)
    return response


class ReplayList(generics.ListAPIView[ReplayRun]):
    """GET: replay runs, newest first (cursor pages; viewer role). POST: start a replay of the
    stored bars (operator role): 202 with the queued run and its URL in ``Location``; 400
    naming the field when it cannot run (nothing is recorded)."""

    serializer_class = ReplayRunSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[ReplayRun]:
        return ReplayRun.objects.all()

    @extend_schema(
        operation_id="replay_start",
        request=ReplayStartSerializer,
        responses={202: ReplayRunSerializer, **NOT_QUEUED},
    )
    def post(self, request: Request) -> Response:
        given = ReplayStartSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            run = operator_replay_start(user=request.user, via="API", **given.validated_data)
        except ReplayInvalid as error:
            raise ValidationError({error.field: [error.message]}) from None
        except ReplayNotQueued as error:
            return _not_queued(error)
        response = Response(ReplayRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = replay_url(run)
        return response


class ReplayDetail(APIView):
    """GET: one run with its router health (viewer role). DELETE: remove a run with its
    database (operator role; 409 while a worker runs it)."""

    @extend_schema(
        operation_id="replay_detail",
        parameters=[RUN_ID],
        responses={200: ReplayDetailSerializer, **NOT_FOUND},
    )
    def get(self, request: Request, run_id: int) -> Response:
        return Response(replay_detail(_run(run_id)))

    @extend_schema(
        operation_id="replay_delete",
        parameters=[RUN_ID],
        responses={204: None, **NOT_FOUND, **CONFLICT},
    )
    def delete(self, request: Request, run_id: int) -> Response:
        run = _run(run_id)
        try:
            operator_replay_delete(user=request.user, run=run, via="API")
        except ReplayInvalid as error:
            raise Conflict(error.message) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReplayStop(APIView):
    """Stop a queued or running run after its current chunk (it can be resumed); 409 when it
    is neither. Operator role."""

    @extend_schema(
        operation_id="replay_stop",
        request=None,
        parameters=[RUN_ID],
        responses={200: ReplayRunSerializer, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = _run(run_id)
        try:
            operator_replay_stop(user=request.user, run=run, via="API")
        except ReplayInvalid as error:
            raise Conflict(error.message) from None
        return Response(ReplayRunSerializer(run).data)


class ReplayResume(APIView):
    """Queue an interrupted or failed run again, or one left running by a worker that died
    (it goes on from its cursor): 202; 409 for a run in another state. Operator role."""

    @extend_schema(
        operation_id="replay_resume",
        request=None,
        parameters=[RUN_ID],
        responses={202: ReplayRunSerializer, **NOT_FOUND, **CONFLICT, **NOT_QUEUED},
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = _run(run_id)
        try:
            operator_replay_resume(user=request.user, run=run, via="API")
        except ReplayInvalid as error:
            raise Conflict(error.message) from None
        except ReplayNotQueued as error:
            return _not_queued(error)
        return Response(ReplayRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ReplayDivergence(APIView):
    """The live-vs-replay divergence report of a done run: both PnLs, the gap split into its
    causes, counts and every decision compared; 409 until the run is done."""

    @extend_schema(
        operation_id="replay_divergence",
        parameters=[RUN_ID],
        responses={200: ReplayDivergenceSerializer, **NOT_FOUND, **CONFLICT},
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = _done(_run(run_id))
        return Response(divergence_report(run).as_dict())


class ReplayDivergenceExport(APIView):
    """The divergence report's decisions as CSV (every row); 409 until the run is done."""

    @extend_schema(
        operation_id="replay_divergence_csv",
        parameters=[RUN_ID],
        responses={(200, "text/csv"): OpenApiTypes.STR, **NOT_FOUND, **CONFLICT},
    )
    def get(self, request: Request, run_id: int) -> StreamingHttpResponse:
        run = _done(_run(run_id))
        report = divergence_report(run)  # read now: the replay's database is not kept open
        response = StreamingHttpResponse(
            csv_lines(iter(report.rows), CSV_COLUMNS), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="replay-{run.pk}-divergence.csv"'
        return response
