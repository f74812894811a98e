"""The trading records as lists for the API and exports: orders, fills and signals, filtered
by symbol, signal source, status and time range, newest first.

One filter set per record serves the paginated JSON list and the CSV export, so both always
hold the same rows for the same query.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import django_filters
from rest_framework.exceptions import ValidationError

from routing.models import Fill, Order, Signal

CSV_CHUNK: Final = 2000

ORDER_COLUMNS: Final = (
    "id",
    "client_order_id",
    "venue_order_id",
    "source",
    "symbol",
    "side",
    "type",
    "purpose",
    "quantity",
    "price",
    "stop_price",
    "reduce_only",
    "status",
    "filled_quantity",
    "decision_price",
    "decided_at",
    "submitted_at",
    "acked_at",
)
FILL_COLUMNS: Final = (
    "id",
    "order",
    "venue_trade_id",
    "source",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "realized_pnl",
    "filled_at",
)
SIGNAL_COLUMNS: Final = (
    "id",
    "created_at",
    "source",
    "symbol",
    "side",
    "strength",
    "status",
    "risk_code",
)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):  # type: ignore[misc]
    """An ISO 8601 time in any offset, compared in UTC: an offset PostgreSQL cannot store
    (beyond +-15:59) or a time that leaves the calendar in UTC is a 400, not a database error."""

    def filter(self, qs: Any, value: datetime | None) -> Any:
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except (OverflowError, ValueError):
                raise ValidationError(
                    {self.field_name: ["This time is out of range once in UTC."]}
                ) from None
        return super().filter(qs, value)


class _Filters(django_filters.FilterSet):  # type: ignore[misc]  # django-filter is untyped
    symbol = django_filters.CharFilter(
        field_name="symbol", lookup_expr="iexact", help_text="A traded symbol, e.g. BTCUSDT."
    )


class OrderFilter(_Filters):
    source = django_filters.CharFilter(
        field_name="signal__source", help_text="The signal source that asked for the order."
    )
    status = django_filters.ChoiceFilter(choices=Order.Status.choices)
    since = UtcDateTimeFilter(
        field_name="decided_at", lookup_expr="gte", help_text="Decided at or after (ISO 8601)."
    )
    until = UtcDateTimeFilter(
        field_name="decided_at", lookup_expr="lt", help_text="Decided before (ISO 8601)."
    )

    class Meta:
        model = Order
        fields = ["symbol", "source", "status", "since", "until"]


class FillFilter(_Filters):
    source = django_filters.CharFilter(
        field_name="signal__source", help_text="The signal source whose order filled."
    )
    since = UtcDateTimeFilter(
        field_name="filled_at", lookup_expr="gte", help_text="Filled at or after (ISO 8601)."
    )
    until = UtcDateTimeFilter(
        field_name="filled_at", lookup_expr="lt", help_text="Filled before (ISO 8601)."
    )

    class Meta:
        model = Fill
        fields = ["symbol", "source", "since", "until"]


class SignalFilter(_Filters):
    source = django_filters.CharFilter(field_name="source")
    status = django_filters.ChoiceFilter(choices=Signal.Status.choices)
    since = UtcDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    until = UtcDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = Signal
        fields = ["symbol", "source", "status", "since", "until"]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def order_row(order: Order) -> dict[str, Any]:
    source = order.signal.source if order.signal_id is not None and order.signal else ""
    return {
        **{name: getattr(order, name) for name in ORDER_COLUMNS if name not in {"source"}},
        "source": source,
    }


def fill_row(fill: Fill) -> dict[str, Any]:
    source = fill.signal.source if fill.signal_id is not None and fill.signal else ""
    return {
        **{name: getattr(fill, name) for name in FILL_COLUMNS if name not in {"source", "order"}},
        "order": fill.order.client_order_id,
        "source": source,
    }


def csv_lines(rows: Iterator[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    """The header, then one line per row (a streamed export never holds them all)."""

    class _Line:
        def write(self, text: str) -> str:
            return text

    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_text(row[column]) for column in columns])
