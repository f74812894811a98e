"""The venue interface and its Binance USD-M futures implementation.

A venue answers in plain values (``VenueOrderState``); every call of ``BinanceFutures`` goes
through the one ``RetryPolicy`` (back-off with full jitter, Retry-After, -1021 re-sync) and
raises what the policy raises: ``OutcomeUnknown`` when a request may have executed,
``OrderNotFound`` for -2013, ``VenueRejected``, ``VenueBanned`` and ``RetriesExhausted``.
The client comes from the environment guard and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from risk.limits import Side
from routing.filters import SymbolFilters, filters_from_exchange_info
from routing.resilience import RetryPolicy, VenueRejected
from routing.weights import WeightBudget

if TYPE_CHECKING:
    # The type only: clients come from the guard (a test fails if one is built elsewhere).
    from tradingsite.guard import BinanceClient


class VenueStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class VenueOrder:
    client_order_id: str
    symbol: str
    side: Side
    type: str  # MARKET, LIMIT, STOP_MARKET
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class VenueOrderState:
    client_order_id: str
    venue_order_id: str
    symbol: str
    status: VenueStatus
    executed_quantity: Decimal
    average_price: Decimal


@dataclass(frozen=True)
class VenueTrade:
    """One execution, as the venue reports it (``userTrades``)."""

    trade_id: str
    venue_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal  # USDT
    realized_pnl: Decimal
    time_ms: int


@dataclass(frozen=True)
class VenueBar:
    """One closed kline."""

    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Venue(Protocol):
    """What the executor needs of a venue. Every method may raise the resilience errors."""

    def exchange_filters(self) -> dict[str, SymbolFilters]:
        """Each tradable symbol's filters (exchangeInfo)."""
        ...

    def submit(self, order: VenueOrder) -> VenueOrderState: ...

    def query(self, *, symbol: str, client_order_id: str) -> VenueOrderState: ...

    def cancel(self, *, symbol: str, client_order_id: str) -> VenueOrderState: ...

    def open_orders(self) -> list[VenueOrderState]: ...

    def trades(self, *, symbol: str, since_ms: int) -> list[VenueTrade]:
        """Executions of ``symbol`` at or after ``since_ms``, oldest first."""
        ...

    def closed_bars(self, *, symbol: str, interval: str, since_ms: int) -> list[VenueBar]:
        """Closed klines opening at or after ``since_ms``, oldest first."""
        ...

    def mark_prices(self) -> dict[str, Decimal]: ...

    def positions(self) -> dict[str, Decimal]:
        """Signed position quantity per symbol (one-way mode); flat symbols may be absent."""
        ...

    def wallet_balance(self) -> Decimal:
        """USDT wallet balance (without unrealised PnL)."""
        ...


def order_state_from_response(response: dict[str, Any]) -> VenueOrderState:
    """Binance's order JSON (create, query and cancel answer alike) as plain values."""
    return VenueOrderState(
        client_order_id=str(response["clientOrderId"]),
        venue_order_id=str(response["orderId"]),
        symbol=str(response["symbol"]),
        status=VenueStatus(response["status"]),
        executed_quantity=Decimal(str(response.get("executedQty", "0"))),
        average_price=Decimal(str(response.get("avgPrice", "0") or "0")),
    )


# Request weights of USD-M futures endpoints (exchangeInfo documents them per endpoint).
WEIGHT_ORDER = 1
WEIGHT_QUERY = 1
WEIGHT_OPEN_ORDERS_ALL = 40
WEIGHT_EXCHANGE_INFO = 1
WEIGHT_TRADES = 5
WEIGHT_KLINES = 5
WEIGHT_MARK_PRICES = 10
WEIGHT_ACCOUNT = 5


class BinanceFutures:
    """USD-M futures through python-binance, one-way mode."""

    def __init__(
        self,
        *,
        client: BinanceClient,
        policy: RetryPolicy,
        budget: WeightBudget | None = None,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._policy = policy
        self._budget = budget
        self._now_ms = now_ms

    def resync_clock(self) -> None:
        """-1021: align request timestamps with the server's clock."""
        server_ms = int(self._client.futures_time()["serverTime"])
        self._client.timestamp_offset = server_ms - self._now_ms()

    def _call(self, weight: int, fn: Callable[[], Any]) -> Any:
        def attempt() -> Any:
            if self._budget is not None:
                # Nothing is reserved while reserve() asks to wait: ask again after waiting.
                while (wait := self._budget.reserve(weight, now_ms=self._now_ms())) > 0:
                    self._policy.sleep(wait)
            result = fn()
            self._observe_weight()
            return result

        return self._policy.call(attempt, on_clock_skew=self.resync_clock)

    def _observe_weight(self) -> None:
        response = getattr(self._client, "response", None)
        used = response.headers.get("X-MBX-USED-WEIGHT-1M") if response is not None else None
        if self._budget is not None and used is not None and str(used).isdigit():
            self._budget.observe(int(used), now_ms=self._now_ms())

    def exchange_filters(self) -> dict[str, SymbolFilters]:
        response = self._call(WEIGHT_EXCHANGE_INFO, self._client.futures_exchange_info)
        return {
            str(item["symbol"]): filters_from_exchange_info(item)
            for item in response["symbols"]
            if item.get("status", "TRADING") == "TRADING"
        }

    def submit(self, order: VenueOrder) -> VenueOrderState:
        params: dict[str, Any] = {
            "symbol": order.symbol,
            "side": str(order.side),
            "type": order.type,
            "quantity": format(order.quantity, "f"),
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "RESULT",
        }
        if order.reduce_only:
            params["reduceOnly"] = "true"
        if order.price is not None:
            params["price"] = format(order.price, "f")
            params["timeInForce"] = "GTC"
        if order.stop_price is not None:
            params["stopPrice"] = format(order.stop_price, "f")
        response = self._call(WEIGHT_ORDER, lambda: self._client.futures_create_order(**params))
        return order_state_from_response(response)

    def query(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_QUERY,
            lambda: self._client.futures_get_order(
                symbol=symbol, origClientOrderId=client_order_id
            ),
        )
        return order_state_from_response(response)

    def cancel(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_ORDER,
            lambda: self._client.futures_cancel_order(
                symbol=symbol, origClientOrderId=client_order_id
            ),
        )
        return order_state_from_response(response)

    def open_orders(self) -> list[VenueOrderState]:
        response = self._call(WEIGHT_OPEN_ORDERS_ALL, self._client.futures_get_open_orders)
        return [order_state_from_response(item) for item in response]

    def trades(self, *, symbol: str, since_ms: int) -> list[VenueTrade]:
        response = self._call(
            WEIGHT_TRADES,
            lambda: self._client.futures_account_trades(symbol=symbol, startTime=since_ms),
        )
        return [
            VenueTrade(
                trade_id=str(item["id"]),
                venue_order_id=str(item["orderId"]),
                symbol=str(item["symbol"]),
                side=Side(item["side"]),
                quantity=Decimal(str(item["qty"])),
                price=Decimal(str(item["price"])),
                fee=Decimal(str(item["commission"])),
                realized_pnl=Decimal(str(item["realizedPnl"])),
                time_ms=int(item["time"]),
            )
            for item in sorted(response, key=lambda trade: (int(trade["time"]), int(trade["id"])))
        ]

    def closed_bars(self, *, symbol: str, interval: str, since_ms: int) -> list[VenueBar]:
        now = self._now_ms()
        response = self._call(
            WEIGHT_KLINES,
            lambda: self._client.futures_klines(
                symbol=symbol, interval=interval, startTime=since_ms, limit=1000
            ),
        )
        # The last kline is usually still open: decisions use closed bars only.
        return [
            VenueBar(
                open_time_ms=int(row[0]),
                close_time_ms=int(row[6]),
                open=Decimal(str(row[1])),
                high=Decimal(str(row[2])),
                low=Decimal(str(row[3])),
                close=Decimal(str(row[4])),
                volume=Decimal(str(row[5])),
            )
            for row in response
            if int(row[6]) < now
        ]

    def mark_prices(self) -> dict[str, Decimal]:
        response = self._call(WEIGHT_MARK_PRICES, self._client.futures_mark_price)
        items = response if isinstance(response, list) else [response]
        return {str(item["symbol"]): Decimal(str(item["markPrice"])) for item in items}

    def positions(self) -> dict[str, Decimal]:
        response = self._call(WEIGHT_ACCOUNT, self._client.futures_position_information)
        return {
            str(item["symbol"]): Decimal(str(item["positionAmt"]))
            for item in response
            if Decimal(str(item["positionAmt"])) != 0
        }

    def wallet_balance(self) -> Decimal:
        response = self._call(WEIGHT_ACCOUNT, self._client.futures_account_balance)
        for item in response:
            if item.get("asset") == "USDT":
                return Decimal(str(item["balance"]))
        raise VenueRejected(None, "the futures account has no USDT balance")
