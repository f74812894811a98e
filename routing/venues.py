"""The venue interface and its Binance USD-M futures implementation.

A venue answers in plain values (``VenueOrderState``); every call of ``BinanceFutures`` goes
through the one ``RetryPolicy`` (back-off with full jitter, Retry-After, -1021 re-sync) and
raises what the policy raises: ``OutcomeUnknown`` when a request may have executed,
``OrderNotFound`` for -2013, ``VenueRejected``, ``VenueBanned`` and ``RetriesExhausted``.
The client comes from the environment guard and nowhere else.

Conditional orders (STOP_MARKET and the like) live on Binance's algo service since December
2025 (``/fapi/v1/algoOrder``): they are sent with the order's own client id as ``clientAlgoId``
and queried and cancelled by it. ``query`` and ``cancel`` take no order type, so they ask the
service the id was sent to (remembered per adapter) first and, when that one does not know the
id (-2013 / -2011), the other: after a restart an unknown stop is still found on the algo
service, never taken for "not placed". A stop's venue order id is its ``algoId`` until it
triggers, then the id of the order it placed (the one its trades carry).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from risk.limits import Side
from routing.filters import SymbolFilters, filters_from_exchange_info
from routing.resilience import NO_SUCH_ORDER, OrderNotFound, RetryPolicy, VenueRejected
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
class VenueIncome:
    """A funding payment or a transfer (``income``): the money that moves the wallet outside
    trades. Transfers are cash flows (never PnL); funding is PnL of the symbol's position."""

    income_id: str  # unique per venue
    kind: str  # FUNDING_FEE or TRANSFER
    symbol: str  # "" for a transfer
    amount: Decimal  # USDT, received > 0
    time_ms: int


INCOME_KINDS = frozenset({"FUNDING_FEE", "TRANSFER"})


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

    def income(self, *, since_ms: int) -> list[VenueIncome]:
        """Funding payments and transfers at or after ``since_ms``, oldest first."""
        ...

    def account_prepare(self, *, symbols: Iterable[str], leverage: int) -> None:
        """One-way position mode, cross margin and ``leverage`` per symbol: set, then verified
        (start-up; raises ``VenueRejected`` when the venue does not end up so configured)."""
        ...


# Binance's conditional order types: sent to, queried on and cancelled at the algo service.
CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
UNKNOWN_ORDER_SENT = -2011  # cancel of an order the venue does not know (or that is finished)
# Algo statuses that say everything themselves. TRIGGERING: the condition was met and the order
# is being placed, so it still counts as working. TRIGGERED / FINISHED: the placed order says.
ALGO_STATUS = {
    "NEW": VenueStatus.NEW,
    "TRIGGERING": VenueStatus.NEW,
    "CANCELED": VenueStatus.CANCELED,
    "REJECTED": VenueStatus.REJECTED,
    "EXPIRED": VenueStatus.EXPIRED,
}


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
WEIGHT_POSITION_MODE = 30
WEIGHT_INCOME = 30
NO_NEED_TO_CHANGE_MARGIN_TYPE = -4046
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
        # Client ids this adapter sent as conditional orders: asked on the algo service first.
        self._conditional_ids: set[str] = set()

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
        if order.type in CONDITIONAL_TYPES:
            return self._submit_conditional(order)
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

    def _submit_conditional(self, order: VenueOrder) -> VenueOrderState:
        if order.stop_price is None:
            raise ValueError(f"{order.type} {order.client_order_id} needs a stop price")
        params: dict[str, Any] = {
            "algoType": "CONDITIONAL",
            "symbol": order.symbol,
            "side": str(order.side),
            "type": order.type,
            "quantity": format(order.quantity, "f"),
            "triggerPrice": format(order.stop_price, "f"),
            # The mark price, not the last trade: one print on a thin book does not fire it.
            "workingType": "MARK_PRICE",
            # The order's own id (python-binance would invent one): an unknown outcome is
            # resolved by it.
            "clientAlgoId": order.client_order_id,
        }
        if order.reduce_only:
            params["reduceOnly"] = "true"
        if order.price is not None:
            params["price"] = format(order.price, "f")
            params["timeInForce"] = "GTC"
        # Remembered before sending, so an unknown outcome is first asked of the algo service.
        self._conditional_ids.add(order.client_order_id)
        response = self._call(
            WEIGHT_ORDER, lambda: self._client.futures_create_algo_order(**params)
        )
        return self._algo_state(response, client_order_id=order.client_order_id)

    def _algo_state(
        self, response: dict[str, Any], *, client_order_id: str | None = None
    ) -> VenueOrderState:
        """An algo order as plain values; once it has triggered, the state of the order it
        placed (status, executed quantity, average price, and the id its trades carry)."""
        symbol = str(response["symbol"])
        cid = client_order_id or str(response["clientAlgoId"])
        status = str(response.get("algoStatus", "NEW"))
        actual = str(response.get("actualOrderId") or "")
        if status in ALGO_STATUS or not actual:
            # TRIGGERED without its order yet is still working; FINISHED without one did nothing.
            fallback = VenueStatus.NEW if status == "TRIGGERED" else VenueStatus.EXPIRED
            return VenueOrderState(
                client_order_id=cid,
                venue_order_id=str(response["algoId"]),
                symbol=symbol,
                status=ALGO_STATUS.get(status, fallback),
                executed_quantity=Decimal(0),
                average_price=Decimal(0),
            )
        placed = self._call(
            WEIGHT_QUERY,
            lambda: self._client.futures_get_order(symbol=symbol, orderId=int(actual)),
        )
        state = order_state_from_response(placed)
        return VenueOrderState(
            client_order_id=cid,
            venue_order_id=state.venue_order_id,
            symbol=symbol,
            status=state.status,
            executed_quantity=state.executed_quantity,
            average_price=state.average_price,
        )

    def _query_regular(self, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_QUERY,
            lambda: self._client.futures_get_order(
                symbol=symbol, origClientOrderId=client_order_id
            ),
        )
        return order_state_from_response(response)

    def _query_algo(self, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_QUERY,
            lambda: self._client.futures_get_algo_order(
                symbol=symbol, clientAlgoId=client_order_id
            ),
        )
        return self._algo_state(response, client_order_id=client_order_id)

    def _cancel_regular(self, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_ORDER,
            lambda: self._client.futures_cancel_order(
                symbol=symbol, origClientOrderId=client_order_id
            ),
        )
        return order_state_from_response(response)

    def _cancel_algo(self, symbol: str, client_order_id: str) -> VenueOrderState:
        response = self._call(
            WEIGHT_ORDER,
            lambda: self._client.futures_cancel_algo_order(
                symbol=symbol, clientAlgoId=client_order_id
            ),
        )
        # The answer is only {algoId, clientAlgoId, code, msg}; a cancel succeeds only for a
        # stop that has not triggered, so none of it executed.
        return VenueOrderState(
            client_order_id=str(response.get("clientAlgoId") or client_order_id),
            venue_order_id=str(response["algoId"]),
            symbol=symbol,
            status=VenueStatus.CANCELED,
            executed_quantity=Decimal(0),
            average_price=Decimal(0),
        )

    def query(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        # Only -2013 from both services is the definitive "never placed"; any other failure of
        # either query propagates (it is not an answer).
        first, second = self._query_regular, self._query_algo
        if client_order_id in self._conditional_ids:
            first, second = second, first
        try:
            return first(symbol, client_order_id)
        except OrderNotFound:
            return second(symbol, client_order_id)

    def cancel(self, *, symbol: str, client_order_id: str) -> VenueOrderState:
        first, second = self._cancel_regular, self._cancel_algo
        if client_order_id in self._conditional_ids:
            first, second = second, first
        try:
            return first(symbol, client_order_id)
        except VenueRejected as error:
            if error.code not in (UNKNOWN_ORDER_SENT, NO_SUCH_ORDER):
                raise
            return second(symbol, client_order_id)

    def open_orders(self) -> list[VenueOrderState]:
        regular = self._call(WEIGHT_OPEN_ORDERS_ALL, self._client.futures_get_open_orders)
        algos = self._call(WEIGHT_OPEN_ORDERS_ALL, self._client.futures_get_open_algo_orders)
        return [order_state_from_response(item) for item in regular] + [
            self._algo_state(item) for item in algos
        ]

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

    def account_prepare(self, *, symbols: Iterable[str], leverage: int) -> None:
        mode = self._call(WEIGHT_POSITION_MODE, self._client.futures_get_position_mode)
        if mode.get("dualSidePosition"):
            self._call(
                WEIGHT_ORDER,
                lambda: self._client.futures_change_position_mode(dualSidePosition="false"),
            )
            mode = self._call(WEIGHT_POSITION_MODE, self._client.futures_get_position_mode)
            if mode.get("dualSidePosition"):
                raise VenueRejected(None, "the account stays in hedge mode; one-way is required")
        for symbol in symbols:
            try:
                self._call(
                    WEIGHT_ORDER,
                    lambda s=symbol: self._client.futures_change_margin_type(  # type: ignore[misc]
                        symbol=s, marginType="CROSSED"
                    ),
                )
            except VenueRejected as error:
                if error.code != NO_NEED_TO_CHANGE_MARGIN_TYPE:
                    raise
            answer = self._call(
                WEIGHT_ORDER,
                lambda s=symbol: self._client.futures_change_leverage(  # type: ignore[misc]
                    symbol=s, leverage=leverage
                ),
            )
            if int(answer["leverage"]) != leverage:
                raise VenueRejected(
                    None, f"{symbol}: leverage is {answer['leverage']}, {leverage} was asked"
                )

    def income(self, *, since_ms: int) -> list[VenueIncome]:
        response = self._call(
            WEIGHT_INCOME,
            lambda: self._client.futures_income_history(startTime=since_ms, limit=1000),
        )
        return [
            VenueIncome(
                income_id=f"{item['incomeType']}:{item.get('tranId', '')}:{item.get('symbol', '')}",
                kind=str(item["incomeType"]),
                symbol=str(item.get("symbol", "")),
                amount=Decimal(str(item["income"])),
                time_ms=int(item["time"]),
            )
            for item in sorted(response, key=lambda entry: int(entry["time"]))
            if item.get("incomeType") in INCOME_KINDS and item.get("asset", "USDT") == "USDT"
        ]
