"""The local books: fills from the venue, positions, NAV points, and the risk state fed by them.

Fills are recorded once (unique venue trade id per symbol) and each moves the symbol's
position through ``routing.accounting`` in the same transaction, with its outbox row and live
push. A NAV point is the venue's wallet plus the unrealised PnL of the local positions at the
venue's marks; it feeds the risk engine with the cash flows since the previous point, so
deposits and withdrawals never look like profit or loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Max, Sum

from risk.limits import Side
from risk.services import risk_nav_observe
from routing.accounting import (
    FLAT,
    PositionState,
    attribution_split,
    fill_applied,
    unrealized_pnl,
)
from routing.health import attribution_as_dict, health_refresh_soon
from routing.models import (
    CashFlow,
    Fill,
    FillAttribution,
    FundingPayment,
    NavPoint,
    Order,
    Position,
    SignalPosition,
)
from routing.venues import Venue, VenueTrade
from tradingsite.decimals import quantize
from tradingsite.live import live_push
from tradingsite.mirrors import nav_mirror, position_mirror


def position_state(row: Position | SignalPosition) -> PositionState:
    return PositionState(
        quantity=row.quantity,
        entry_price=row.entry_price,
        realized_pnl=row.realized_pnl,
        fees=row.fees,
        funding=row.funding,
        entry_residue=row.entry_residue,
    )


def _store(row: Position | SignalPosition, state: PositionState) -> None:
    row.quantity = state.quantity
    row.entry_price = state.entry_price
    row.entry_residue = state.entry_residue
    row.realized_pnl = state.realized_pnl
    row.fees = state.fees
    row.funding = state.funding
    row.save()


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _since_ms(symbol: str) -> int:
    newest = Fill.objects.filter(symbol=symbol).aggregate(newest=Max("filled_at"))["newest"]
    return int(newest.timestamp() * 1000) if newest is not None else 0


def _new_trades(symbol: str, trades: Iterable[VenueTrade]) -> list[VenueTrade]:
    ids = [trade.trade_id for trade in trades]
    known = set(
        Fill.objects.filter(symbol=symbol, venue_trade_id__in=ids).values_list(
            "venue_trade_id", flat=True
        )
    )
    return [trade for trade in trades if trade.trade_id not in known]


def _signed(side: Side, quantity: Decimal) -> Decimal:
    return quantity if side is Side.BUY else -quantity


def _attribute(
    virtual: dict[str, PositionState], fill: Fill, order: Order
) -> list[FillAttribution]:
    """Move the signal sources' virtual positions by ``fill``: all of it to the order's
    signal source, or, for an order without a signal (stop, flatten), shared among the
    positions it reduces (``routing.accounting.attribution_split``)."""
    side = Side(fill.side)
    if order.signal is not None:
        parts = [(order.signal.source, fill.quantity, fill.fee)]
    else:
        parts = attribution_split(virtual, side=side, quantity=fill.quantity, fee=fill.fee)
    rows = []
    for source, quantity, fee in parts:
        before = virtual.get(source, FLAT).quantity
        virtual[source], realized = fill_applied(
            virtual.get(source, FLAT), side=side, quantity=quantity, price=fill.price, fee=fee
        )
        rows.append(
            FillAttribution(
                fill=fill,
                source=source,
                symbol=fill.symbol,
                side=fill.side,
                quantity=quantity,
                price=fill.price,
                fee=fee,
                realized_pnl=realized,
                closing=before != 0 and (before > 0) != (_signed(side, quantity) > 0),
                decision_price=order.decision_price,
                filled_at=fill.filled_at,
            )
        )
    return rows


def fills_record(*, venue: Venue, symbol: str) -> list[Fill]:
    """Record the venue's new executions of ``symbol`` and move its position, and the signal
    sources' virtual positions, accordingly.

    A trade whose order is not ours is left for reconciliation (it never moves our books).
    After the commit, each fill is pushed to open pages and the router health aggregates are
    refreshed (``routing.health``).
    """
    trades = _new_trades(symbol, venue.trades(symbol=symbol, since_ms=_since_ms(symbol)))
    if not trades:
        return []
    orders = {
        order.venue_order_id: order
        for order in Order.objects.select_related("signal").filter(
            symbol=symbol, venue_order_id__in={trade.venue_order_id for trade in trades}
        )
    }
    recorded: list[Fill] = []
    attributions: list[FillAttribution] = []
    with transaction.atomic():
        position, _ = Position.objects.select_for_update().get_or_create(symbol=symbol)
        state = position_state(position)
        virtual_rows = {
            row.source: row
            for row in SignalPosition.objects.select_for_update().filter(symbol=symbol)
        }
        virtual = {source: position_state(row) for source, row in virtual_rows.items()}
        for trade in trades:
            order = orders.get(trade.venue_order_id)
            if order is None:
                continue
            state, realized = fill_applied(
                state, side=trade.side, quantity=trade.quantity, price=trade.price, fee=trade.fee
            )
            fill = Fill.objects.create(
                order=order,
                signal_id=order.signal_id,
                venue_trade_id=trade.trade_id,
                symbol=symbol,
                side=str(trade.side),
                quantity=trade.quantity,
                price=trade.price,
                fee=trade.fee,
                realized_pnl=realized,
                filled_at=_moment(trade.time_ms),
            )
            recorded.append(fill)
            attributions.extend(_attribute(virtual, fill, order))
        _store(position, state)
        for source, virtual_state in virtual.items():
            row = virtual_rows.get(source) or SignalPosition(source=source, symbol=symbol)
            _store(row, virtual_state)
        FillAttribution.objects.bulk_create(attributions)
        payload = {
            "symbol": symbol,
            "quantity": position.quantity,
            "entry_price": position.entry_price,
            "realized_pnl": position.realized_pnl,
            "fees": position.fees,
        }
        position_mirror(symbol=symbol)
        live_push(event="routing.position", data={k: str(v) for k, v in payload.items()})
        for attribution in attributions:
            live_push(event="routing.fill", data=attribution_as_dict(attribution))
        if attributions:
            transaction.on_commit(health_refresh_soon)
    return recorded


def income_record(*, venue: Venue) -> int:
    """Book the venue's new funding payments (PnL of the position) and transfers (cash flows,
    never PnL) once each; return how many were booked."""
    newest = max(
        (
            moment
            for moment in (
                FundingPayment.objects.aggregate(newest=Max("at"))["newest"],
                CashFlow.objects.filter(venue_id__startswith="TRANSFER:").aggregate(
                    newest=Max("at")
                )["newest"],
            )
            if moment is not None
        ),
        default=None,
    )
    since = int(newest.timestamp() * 1000) if newest is not None else 0
    items = venue.income(since_ms=since)
    known = set(
        FundingPayment.objects.filter(venue_id__in=[i.income_id for i in items]).values_list(
            "venue_id", flat=True
        )
    ) | set(
        CashFlow.objects.filter(venue_id__in=[i.income_id for i in items]).values_list(
            "venue_id", flat=True
        )
    )
    booked = 0
    for item in items:
        if item.income_id in known:
            continue
        with transaction.atomic():
            if item.kind == "TRANSFER":
                CashFlow.objects.create(
                    at=_moment(item.time_ms),
                    kind=CashFlow.Kind.TRANSFER,
                    amount=item.amount,
                    venue_id=item.income_id,
                )
            else:
                FundingPayment.objects.create(
                    venue_id=item.income_id,
                    symbol=item.symbol,
                    amount=item.amount,
                    at=_moment(item.time_ms),
                )
                position, created = Position.objects.select_for_update().get_or_create(
                    symbol=item.symbol
                )
                position.funding += item.amount
                position.save(update_fields=["funding", "updated_at"])
                if created:  # funding before any fill: the mirror learns of the position now
                    position_mirror(symbol=item.symbol)
        booked += 1
    return booked


def nav_record(*, venue: Venue, at: datetime) -> NavPoint:
    """A NAV point from the venue's wallet and marks, fed to the risk engine with its cash flow."""
    wallet = venue.wallet_balance()
    marks = venue.mark_prices()
    unrealized = sum(
        (
            unrealized_pnl(position_state(row), mark_price=marks[row.symbol])
            for row in Position.objects.exclude(quantity=0)
        ),
        Decimal(0),
    )
    previous = NavPoint.objects.order_by("-at", "-id").values_list("at", flat=True).first()
    flows = CashFlow.objects.filter(at__lte=at)
    if previous is not None:
        flows = flows.filter(at__gt=previous)
    cash_flow = flows.aggregate(total=Sum("amount"))["total"] or Decimal(0)
    nav = quantize(wallet + unrealized)
    with transaction.atomic():
        point = NavPoint.objects.create(
            at=at,
            nav=nav,
            wallet=quantize(wallet),
            unrealized_pnl=quantize(unrealized),
            cash_flow=cash_flow,
        )
        nav_mirror()
        live_push(event="routing.nav", data={"at": at.isoformat(), "nav": str(nav)})
    risk_nav_observe(nav=nav, cash_flow=cash_flow, at=at)
    return point


def attribution_rebuild() -> int:
    """Attribute every fill again, from the first, per symbol in booking order: the signal
    sources' virtual positions and fill shares are rebuilt (after an upgrade from books
    without attribution, or a change of its rules). The caller holds the executor's lock.
    Returns the number of shares written."""
    written = 0
    with transaction.atomic():
        FillAttribution.objects.all().delete()
        SignalPosition.objects.all().delete()
        for symbol in Fill.objects.values_list("symbol", flat=True).distinct().order_by():
            virtual: dict[str, PositionState] = {}
            rows: list[FillAttribution] = []
            for fill in (
                Fill.objects.filter(symbol=symbol)
                .select_related("order__signal")
                .order_by("filled_at", "id")
            ):
                rows.extend(_attribute(virtual, fill, fill.order))
            FillAttribution.objects.bulk_create(rows, batch_size=2000)
            for source, state in virtual.items():
                _store(SignalPosition(source=source, symbol=symbol), state)
            written += len(rows)
    return written
