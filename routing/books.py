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

from risk.services import risk_nav_observe
from routing.accounting import PositionState, fill_applied, unrealized_pnl
from routing.models import CashFlow, Fill, FundingPayment, NavPoint, Order, Position
from routing.venues import Venue, VenueTrade
from tradingsite.decimals import quantize
from tradingsite.live import live_push
from tradingsite.outbox import enqueue


def position_state(row: Position) -> PositionState:
    return PositionState(
        quantity=row.quantity,
        entry_price=row.entry_price,
        realized_pnl=row.realized_pnl,
        fees=row.fees,
        funding=row.funding,
        entry_residue=row.entry_residue,
    )


def _store(row: Position, state: PositionState) -> None:
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


def fills_record(*, venue: Venue, symbol: str) -> list[Fill]:
    """Record the venue's new executions of ``symbol`` and move its position accordingly.

    A trade whose order is not ours is left for reconciliation (it never moves our books).
    """
    trades = _new_trades(symbol, venue.trades(symbol=symbol, since_ms=_since_ms(symbol)))
    if not trades:
        return []
    orders = {
        order.venue_order_id: order
        for order in Order.objects.filter(
            symbol=symbol, venue_order_id__in={trade.venue_order_id for trade in trades}
        )
    }
    recorded: list[Fill] = []
    with transaction.atomic():
        position, _ = Position.objects.select_for_update().get_or_create(symbol=symbol)
        state = position_state(position)
        for trade in trades:
            order = orders.get(trade.venue_order_id)
            if order is None:
                continue
            state, realized = fill_applied(
                state, side=trade.side, quantity=trade.quantity, price=trade.price, fee=trade.fee
            )
            recorded.append(
                Fill.objects.create(
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
            )
        _store(position, state)
        payload = {
            "symbol": symbol,
            "quantity": position.quantity,
            "entry_price": position.entry_price,
            "realized_pnl": position.realized_pnl,
            "fees": position.fees,
        }
        enqueue("positions", symbol, payload)
        live_push(event="routing.position", data={k: str(v) for k, v in payload.items()})
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
                position, _ = Position.objects.select_for_update().get_or_create(symbol=item.symbol)
                position.funding += item.amount
                position.save(update_fields=["funding", "updated_at"])
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
        enqueue("nav", "latest", {"at": at, "nav": nav, "wallet": wallet})
        live_push(event="routing.nav", data={"at": at.isoformat(), "nav": str(nav)})
    risk_nav_observe(nav=nav, cash_flow=cash_flow, at=at)
    return point
