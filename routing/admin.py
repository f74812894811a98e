from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from routing.models import (
    CashFlow,
    Fill,
    Instrument,
    MarketBar,
    NavPoint,
    Order,
    Position,
    Signal,
    SignalSource,
)
from tradingsite.accounts import is_operator
from tradingsite.admin_actions import OperatorAdminMixin, ReadOnlyAdmin


@admin.register(Instrument)
class InstrumentAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["symbol", "tick_size", "step_size", "min_qty", "min_notional", "updated_at"]


@admin.register(MarketBar)
class MarketBarAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["symbol", "interval", "open_time", "open", "high", "low", "close", "volume"]
    list_filter = ["symbol", "interval"]
    date_hierarchy = "open_time"


@admin.register(Signal)
class SignalAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["created_at", "source", "symbol", "side", "strength", "status", "risk_code"]
    list_filter = ["status", "source", "symbol"]
    search_fields = ["risk_reason"]


@admin.register(Order)
class OrderAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = [
        "client_order_id",
        "symbol",
        "side",
        "type",
        "purpose",
        "quantity",
        "status",
        "attempts",
        "decided_at",
    ]
    list_filter = ["status", "purpose", "symbol"]
    search_fields = ["client_order_id", "venue_order_id"]


@admin.register(Fill)
class FillAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["filled_at", "symbol", "side", "quantity", "price", "fee", "realized_pnl"]
    list_filter = ["symbol"]
    search_fields = ["venue_trade_id", "order__client_order_id"]


@admin.register(Position)
class PositionAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["symbol", "quantity", "entry_price", "realized_pnl", "fees", "funding"]


@admin.register(CashFlow)
class CashFlowAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["at", "kind", "amount", "venue_id"]
    list_filter = ["kind"]


@admin.register(NavPoint)
class NavPointAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = ["at", "nav", "wallet", "unrealized_pnl", "cash_flow"]
    date_hierarchy = "at"


@admin.register(SignalSource)
class SignalSourceAdmin(OperatorAdminMixin, admin.ModelAdmin[SignalSource]):
    list_display = ["name", "enabled", "weight", "updated_at"]
    list_editable = ["enabled", "weight"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)
