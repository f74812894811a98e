from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from routing.models import (
    CashFlow,
    Fill,
    FillAttribution,
    FundingPayment,
    HealthCell,
    Instrument,
    MarketBar,
    NavPoint,
    Order,
    PaperAccount,
    Position,
    ReplayRun,
    RouterHealthSummary,
    Signal,
    SignalPosition,
    SignalSource,
)
from routing.reconcile import symbol_unhalt
from tradingsite.accounts import is_operator
from tradingsite.admin_actions import OperatorAdminMixin, ReadOnlyAdmin, confirmed_action


@confirmed_action(
    name="symbol_unhalt",
    title="Un-halt trading in these symbols",
    explanation="Reconciliation halted them because local and venue positions differed. If they "
    "still differ, the next reconciliation halts them again.",
)
def symbol_unhalt_action(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    symbols = [row.symbol for row in queryset.filter(trading_halted=True)]
    for symbol in symbols:
        symbol_unhalt(symbol=symbol, actor=str(request.user.get_username()), note=reason)
    return f"Un-halted: {', '.join(symbols) or 'nothing was halted'}."


@admin.register(Instrument)
class InstrumentAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = [
        "symbol",
        "trading_halted",
        "halt_reason",
        "tick_size",
        "step_size",
        "min_qty",
        "min_notional",
        "updated_at",
    ]
    list_filter = ["trading_halted"]
    actions = [symbol_unhalt_action]


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


# --- records the services write: inspectable, never edited by hand ---------------------------


@admin.register(FundingPayment)
class FundingPaymentAdmin(ReadOnlyAdmin):
    list_display = ["at", "symbol", "amount", "venue_id"]
    list_filter = ["symbol"]
    search_fields = ["symbol", "venue_id"]
    date_hierarchy = "at"


@admin.register(SignalPosition)
class SignalPositionAdmin(ReadOnlyAdmin):
    """Each signal source's virtual position per symbol (router health attributes fills to
    them)."""

    list_display = ["source", "symbol", "quantity", "entry_price", "realized_pnl", "fees"]
    list_filter = ["source", "symbol"]
    search_fields = ["source", "symbol"]


@admin.register(FillAttribution)
class FillAttributionAdmin(ReadOnlyAdmin):
    """A fill's share per signal source."""

    list_display = ["filled_at", "source", "symbol", "side", "quantity", "price", "realized_pnl"]
    list_filter = ["source", "symbol", "side", "closing"]
    search_fields = ["source", "symbol", "fill__venue_trade_id"]
    date_hierarchy = "filled_at"
    list_select_related = ["fill"]


@admin.register(HealthCell)
class HealthCellAdmin(ReadOnlyAdmin):
    """Router health's per-period sums (rebuilt by router_health_rebuild)."""

    list_display = ["start", "period_seconds", "source", "symbol"]
    list_filter = ["period_seconds", "source", "symbol"]
    search_fields = ["source", "symbol"]


@admin.register(RouterHealthSummary)
class RouterHealthSummaryAdmin(ReadOnlyAdmin):
    list_display = ["key", "computed_at"]


@admin.register(PaperAccount)
class PaperAccountAdmin(ReadOnlyAdmin):
    """The paper venue's book (orders, positions, balance) as the executor saved it."""

    list_display = ["name", "version", "updated_at"]
    search_fields = ["name"]


@admin.register(ReplayRun)
class ReplayRunAdmin(ReadOnlyAdmin):
    """Replays as the live side knows them (started, stopped and resumed on the Replays tab
    or through the API; their own rows are in their own databases)."""

    list_display = ["id", "status", "start", "end", "bars_done", "bars_total", "created_by"]
    list_filter = ["status"]
