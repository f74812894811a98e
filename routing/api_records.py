"""The trading records through the API: orders, fills and signals as cursor-paginated lists
(newest first; ``?cursor=`` follows ``next``) and fills and orders as CSV exports, all with
the same filters (``symbol``, ``source``, ``status``, ``since``, ``until``). Viewer role."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request

from routing.models import Fill, Order, Signal
from routing.records import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    FillFilter,
    OrderFilter,
    SignalFilter,
    csv_lines,
    fill_row,
    order_row,
)
from tradingsite.api import NewestFirst


class OrderSerializer(serializers.ModelSerializer[Order]):
    source = serializers.CharField(  # type: ignore[assignment]
        source="signal.source", default="", read_only=True
    )

    class Meta:
        model = Order
        fields = list(ORDER_COLUMNS)


class FillSerializer(serializers.ModelSerializer[Fill]):
    order = serializers.CharField(source="order.client_order_id", read_only=True)
    source = serializers.CharField(  # type: ignore[assignment]
        source="signal.source", default="", read_only=True
    )

    class Meta:
        model = Fill
        fields = list(FILL_COLUMNS)


class SignalSerializer(serializers.ModelSerializer[Signal]):
    class Meta:
        model = Signal
        fields = ["id", "created_at", "source", "symbol", "side", "strength", "status", "risk_code"]


class _Records(generics.ListAPIView[Any]):
    pagination_class = NewestFirst
    filter_backends = [DjangoFilterBackend]


class OrderList(_Records):
    """Orders, newest first, filtered by symbol, signal source, status and decision time."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.select_related("signal")


class FillList(_Records):
    """Fills, newest first, filtered by symbol, signal source and fill time."""

    serializer_class = FillSerializer
    filterset_class = FillFilter

    def get_queryset(self) -> QuerySet[Fill]:
        return Fill.objects.select_related("signal", "order")


class _Export(generics.GenericAPIView[Any]):
    filter_backends = [DjangoFilterBackend]
    filename = ""
    columns: tuple[str, ...] = ()

    def row(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        records = self.filter_queryset(self.get_queryset()).order_by("-id")
        rows = (self.row(record) for record in records.iterator(chunk_size=2000))
        response = StreamingHttpResponse(csv_lines(rows, self.columns), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{self.filename}"'
        return response


class FillExport(_Export):
    """Every fill the filters select, as CSV (streamed; no page limit)."""

    filterset_class = FillFilter
    filename = "fills.csv"
    columns = FILL_COLUMNS

    def get_queryset(self) -> QuerySet[Fill]:
        return Fill.objects.select_related("signal", "order")

    def row(self, record: Any) -> dict[str, Any]:
        return fill_row(record)


class OrderExport(_Export):
    """Every order the filters select, as CSV (streamed; no page limit)."""

    filterset_class = OrderFilter
    filename = "orders.csv"
    columns = ORDER_COLUMNS

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.select_related("signal")

    def row(self, record: Any) -> dict[str, Any]:
        return order_row(record)


class SignalList(_Records):
    """Signals, newest first, filtered by symbol, source, status and creation time."""

    serializer_class = SignalSerializer
    filterset_class = SignalFilter

    def get_queryset(self) -> QuerySet[Signal]:
        return Signal.objects.all()
