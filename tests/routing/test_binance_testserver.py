"""The local Binance USD-M test server, driven through python-binance's real ``Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from routing.binance_testserver import BinanceTestServer, Fault, SymbolSpec

KEY = "k" * 64
SECRET = "s" * 64
ORDER = "/fapi/v1/order"


class OffsetClock:
    """Real time plus an adjustable offset (python-binance stamps requests with time.time())."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def server(clock: OffsetClock) -> Iterator[BinanceTestServer]:
    with BinanceTestServer(
        KEY,
        SECRET,
        [SymbolSpec.default("BTCUSDT"), SymbolSpec.default("ETHUSDT")],
        clock=clock,
        balance=Decimal("10000"),
        seed=7,
        slow_seconds=0.2,
        timeout_seconds=1.0,
    ) as running:
        yield running


def make_client(server: BinanceTestServer, *, secret: str = SECRET, key: str = KEY) -> Client:
    client = Client(key, secret, ping=False)
    client.FUTURES_URL = server.url
    client.REQUEST_RECVWINDOW = 5000
    client.REQUEST_TIMEOUT = 0.5
    return client


@pytest.fixture
def client(server: BinanceTestServer) -> Client:
    return make_client(server)


def api_error(call: object, *args: object, **kwargs: object) -> BinanceAPIException:
    assert callable(call)
    with pytest.raises(BinanceAPIException) as caught:
        call(*args, **kwargs)
    return caught.value


def market(client: Client, side: str, qty: str, cid: str | None = None, **extra: str) -> Any:
    params = {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": qty, **extra}
    if cid is not None:
        params["newClientOrderId"] = cid
    return client.futures_create_order(**params)


def resting_limit(client: Client, cid: str, price: str = "50000.0") -> Any:
    return client.futures_create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price=price,
        newClientOrderId=cid,
    )


# --- public endpoints ------------------------------------------------------------------------


def test_public_endpoints_and_exchange_filters(
    server: BinanceTestServer, client: Client, clock: OffsetClock
) -> None:
    assert client.futures_ping() == {}
    assert abs(client.futures_time()["serverTime"] - clock()) < 2000

    info = client.futures_exchange_info()
    limits = {(r["rateLimitType"], r["interval"]): r["limit"] for r in info["rateLimits"]}
    assert limits[("REQUEST_WEIGHT", "MINUTE")] == 2400
    assert limits[("ORDERS", "MINUTE")] == 1200
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.10"
    assert filters["LOT_SIZE"] == {
        "filterType": "LOT_SIZE",
        "minQty": "0.001",
        "maxQty": "1000",
        "stepSize": "0.001",
    }
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "120"
    assert filters["MIN_NOTIONAL"]["notional"] == "100"
    assert btc["contractType"] == "PERPETUAL"
    assert btc["quoteAsset"] == btc["marginAsset"] == "USDT"

    funding = {row["symbol"]: row for row in client.futures_v1_get_funding_info()}
    assert funding["BTCUSDT"]["fundingIntervalHours"] == 8
    mark = client.futures_mark_price(symbol="BTCUSDT")
    assert mark["markPrice"] == "60000.0"
    assert mark["nextFundingTime"] % (8 * 3600 * 1000) == 0
    assert mark["nextFundingTime"] > clock()
    assert mark["lastFundingRate"] == "0.00010000"
    assert len(client.futures_mark_price()) == 2

    used = int(client.response.headers["X-MBX-USED-WEIGHT-1M"])
    assert used == server.used_weight >= 5


def test_klines_are_closed_bars_built_from_set_prices() -> None:
    now = {"ms": 1_700_000_040_000 - 1_700_000_040_000 % 60_000}
    start = now["ms"]
    with BinanceTestServer(KEY, SECRET, ["BTCUSDT"], clock=lambda: now["ms"]) as server:
        client = make_client(server)
        for offset, price in [(10_000, "60100"), (20_000, "59900.5"), (50_000, "60050")]:
            now["ms"] = start + offset
            server.set_price("BTCUSDT", Decimal(price))
        now["ms"] = start + 65_000
        server.set_price("BTCUSDT", Decimal("61000"))  # in the still-open second bar
        bars = client.futures_klines(symbol="BTCUSDT", interval="1m")
        assert bars == [
            [
                start,
                "60000.0",
                "60100.0",
                "59900.5",
                "60050.0",
                "0",
                start + 59_999,
                "0",
                0,
                "0",
                "0",
                "0",
            ]
        ]
        now["ms"] = start + 180_000
        bars = client.futures_klines(symbol="BTCUSDT", interval="1m", limit=2)
        assert [b[0] for b in bars] == [start + 60_000, start + 120_000]
        assert bars[0][1:5] == ["60050.0", "61000.0", "60050.0", "61000.0"]
        assert bars[1][1:5] == ["61000.0"] * 4
        bars = client.futures_klines(symbol="BTCUSDT", interval="1m", startTime=start)
        assert len(bars) == 3
        with pytest.raises(BinanceAPIException) as caught:
            client.futures_klines(symbol="BTCUSDT", interval="7m")
        assert caught.value.code == -1120


# --- orders, positions, balance -------------------------------------------------------------


def test_market_order_fills_and_moves_position_and_balance(
    server: BinanceTestServer, client: Client
) -> None:
    ack = market(client, "BUY", "0.010", "buy-1")
    # Binance's default ACK answer: accepted, not yet showing the fill.
    assert ack["status"] == "NEW"
    assert ack["executedQty"] == "0.000"
    assert ack["clientOrderId"] == "buy-1"

    order = client.futures_get_order(symbol="BTCUSDT", origClientOrderId="buy-1")
    assert order["status"] == "FILLED"
    assert order["executedQty"] == "0.010"
    assert Decimal(order["avgPrice"]) == Decimal("60000")
    assert Decimal(order["cumQuote"]) == Decimal("600")

    (trade,) = client.futures_account_trades(symbol="BTCUSDT")
    assert trade["orderId"] == ack["orderId"]
    assert Decimal(trade["commission"]) == Decimal("0.3")  # 600 x 0.05 % taker
    assert trade["commissionAsset"] == "USDT"
    assert Decimal(trade["realizedPnl"]) == 0

    (position,) = client.futures_position_information(symbol="BTCUSDT")
    assert position["positionAmt"] == "0.010"
    assert Decimal(position["entryPrice"]) == Decimal("60000")
    assert server.position("BTCUSDT").amount == Decimal("0.010")
    assert server.balance == Decimal("9999.7")

    server.set_price("BTCUSDT", Decimal("61000"))
    result = market(client, "SELL", "0.004", "sell-1", newOrderRespType="RESULT")
    assert result["status"] == "FILLED"
    # realised (61000 - 60000) x 0.004 = 4; fee 244 x 0.0005 = 0.122
    assert server.balance == Decimal("9999.7") + 4 - Decimal("0.122")
    assert server.position("BTCUSDT").amount == Decimal("0.006")
    assert server.position("BTCUSDT").entry_price == Decimal("60000")
    (balance,) = client.futures_account_balance()
    assert Decimal(balance["balance"]) == server.balance
    assert Decimal(balance["crossUnPnl"]) == Decimal("6")  # 0.006 x 1000
    account = client.futures_account()
    assert Decimal(account["totalWalletBalance"]) == server.balance
    income = client.futures_income_history(incomeType="REALIZED_PNL")
    assert [Decimal(row["income"]) for row in income] == [Decimal("4")]
    assert len(client.futures_income_history(incomeType="COMMISSION")) == 2

    # Flip: sell 0.010 against a 0.006 long -> short 0.004 at the fill price.
    market(client, "SELL", "0.010")
    assert server.position("BTCUSDT").amount == Decimal("-0.004")
    assert server.position("BTCUSDT").entry_price == Decimal("61000")
    assert [o.client_order_id for o in server.accepted_orders][:2] == ["buy-1", "sell-1"]
    assert server.accepted_orders[2].client_order_id.startswith("x-Cb7ytekJ")


def test_limit_order_rests_until_the_price_crosses(
    server: BinanceTestServer, client: Client
) -> None:
    placed = resting_limit(client, "lim-1", "59000.0")
    assert placed["status"] == "NEW"
    assert [o["clientOrderId"] for o in client.futures_get_open_orders(symbol="BTCUSDT")] == [
        "lim-1"
    ]
    server.set_price("BTCUSDT", Decimal("59500"))
    assert client.futures_get_order(symbol="BTCUSDT", orderId=placed["orderId"])["status"] == "NEW"
    server.set_price("BTCUSDT", Decimal("58950"))
    filled = client.futures_get_order(symbol="BTCUSDT", orderId=placed["orderId"])
    assert filled["status"] == "FILLED"
    assert Decimal(filled["avgPrice"]) == Decimal("59000")  # at its limit, as maker
    assert server.trades[-1].maker
    assert server.trades[-1].commission == Decimal("0.118")  # 590 x 0.02 %
    assert client.futures_get_open_orders() == []

    resting_limit(client, "lim-2")
    resting_limit(client, "lim-3")
    assert client.futures_cancel_all_open_orders(symbol="BTCUSDT")["code"] == 200
    assert server.open_orders() == []


def test_client_order_id_is_refused_only_while_an_order_with_it_is_open(
    server: BinanceTestServer, client: Client
) -> None:
    resting_limit(client, "dup-1")
    error = api_error(resting_limit, client, "dup-1")
    assert (error.status_code, error.code) == (400, -4116)

    client.futures_cancel_order(symbol="BTCUSDT", origClientOrderId="dup-1")
    again = resting_limit(client, "dup-1")  # accepted again after the cancel
    server.set_price("BTCUSDT", Decimal("49000"))  # ... and it fills
    assert client.futures_get_order(symbol="BTCUSDT", orderId=again["orderId"])["status"] == (
        "FILLED"
    )
    server.set_price("BTCUSDT", Decimal("60000"))
    market(client, "BUY", "0.002", "dup-1")  # accepted again after the fill

    assert [o.client_order_id for o in server.accepted_orders] == ["dup-1"] * 3
    assert len({o.order_id for o in server.accepted_orders}) == 3


def test_query_by_client_order_id_returns_the_newest_or_2013(
    server: BinanceTestServer, client: Client
) -> None:
    first = market(client, "BUY", "0.002", "q-1")
    second = resting_limit(client, "q-1")
    found = client.futures_get_order(symbol="BTCUSDT", origClientOrderId="q-1")
    assert found["orderId"] == second["orderId"] != first["orderId"]
    assert found["status"] == "NEW"
    assert "time" in found
    assert "updateTime" in found

    missing = api_error(client.futures_get_order, symbol="BTCUSDT", origClientOrderId="nope")
    assert (missing.status_code, missing.code, missing.message) == (
        400,
        -2013,
        "Order does not exist.",
    )
    unknown = api_error(client.futures_cancel_order, symbol="BTCUSDT", origClientOrderId="nope")
    assert (unknown.status_code, unknown.code) == (400, -2011)
    filled = api_error(client.futures_cancel_order, symbol="BTCUSDT", orderId=first["orderId"])
    assert filled.code == -2011
    neither = api_error(client.futures_get_order, symbol="BTCUSDT")
    assert neither.code == -1102


@pytest.mark.parametrize("cid", ["has space", "x" * 37, "bad#char"])
def test_invalid_client_order_id_is_refused(client: Client, cid: str) -> None:
    assert api_error(market, client, "BUY", "0.002", cid).code == -4015


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"quantity": "0.0015"}, -1111),  # finer than the step size's precision
        ({"quantity": "0.001"}, -4164),  # 60 USDT < 100 min notional
        ({"quantity": "0"}, -4003),
        ({"quantity": "121"}, -4005),  # above MARKET_LOT_SIZE maxQty
        ({"quantity": "1e-3"}, -1100),
        ({"symbol": "DOGEUSDT"}, -1121),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "59000.05"}, -1111),
        ({"type": "LIMIT", "timeInForce": "GTC"}, -1102),
        ({"type": "LIMIT", "price": "59000.0"}, -1102),
        ({"type": "STOP_MARKET", "stopPrice": "59000"}, -4120),
        ({"positionSide": "LONG"}, -4061),
    ],
)
def test_filter_violations(
    server: BinanceTestServer, client: Client, params: dict[str, str], code: int
) -> None:
    data = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010", **params}
    # Raw endpoint (futures_create_order would route STOP_MARKET to the algo service).
    error = api_error(client._request_futures_api, "post", "order", True, data=data)
    assert (error.status_code, error.code) == (400, code)
    assert server.accepted_orders == []


def test_tick_size_step_size_and_min_qty() -> None:
    spec = SymbolSpec(
        "XYZUSDT",
        Decimal("10"),
        tick_size=Decimal("0.05"),
        step_size=Decimal("0.5"),
        min_qty=Decimal("1"),
        min_notional=Decimal("5"),
        min_price=Decimal("0.05"),
    )
    with BinanceTestServer(KEY, SECRET, [spec]) as server:
        client = make_client(server)

        def order(**params: str) -> Any:
            data = {"symbol": "XYZUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
            return api_error(client.futures_create_order, **{**data, **params}).code

        assert order(quantity="1", price="9.03") == -4014
        assert order(quantity="1.25", price="9.05") == -1111
        assert order(quantity="1.2", price="9.05") == -4023
        assert order(quantity="0.5", price="9.05") == -4004
        assert order(quantity="1", price="0") == -4001
        placed = client.futures_create_order(
            symbol="XYZUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="1.5",
            price="9.05",
        )  # fmt: skip
        assert placed["price"] == "9.05"
        assert placed["origQty"] == "1.5"


def test_reduce_only_may_not_increase_the_position(
    server: BinanceTestServer, client: Client
) -> None:
    flat = api_error(market, client, "SELL", "0.002", reduceOnly="true")
    assert (flat.status_code, flat.code, flat.message) == (
        400,
        -2022,
        "ReduceOnly Order is rejected.",
    )
    market(client, "BUY", "0.010")
    assert api_error(market, client, "BUY", "0.002", reduceOnly="true").code == -2022
    # Reduce-only is exempt from the min notional and reduces the long.
    market(client, "SELL", "0.001", "ro-1", reduceOnly="true")
    assert server.position("BTCUSDT").amount == Decimal("0.009")
    # Larger than the position: fills the position only, the rest expires.
    market(client, "SELL", "0.050", "ro-2", reduceOnly="true")
    assert server.position("BTCUSDT").amount == 0
    order = client.futures_get_order(symbol="BTCUSDT", origClientOrderId="ro-2")
    assert (order["status"], order["executedQty"]) == ("EXPIRED", "0.009")


def test_insufficient_margin(server: BinanceTestServer, client: Client) -> None:
    error = api_error(market, client, "BUY", "100")  # 6M notional on 10k at 20x
    assert (error.status_code, error.code, error.message) == (400, -2019, "Margin is insufficient.")
    client.futures_change_leverage(symbol="BTCUSDT", leverage=125)
    assert api_error(market, client, "BUY", "100").code == -2019
    assert server.accepted_orders == []


def test_stop_market_rests_on_the_algo_service_and_triggers(
    server: BinanceTestServer, client: Client
) -> None:
    market(client, "BUY", "0.010")
    # python-binance 1.0.37 sends STOP_MARKET to POST /fapi/v1/algoOrder (stopPrice->triggerPrice).
    stop = client.futures_create_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stopPrice="59000",
        closePosition="true",
        clientAlgoId="stop-1",
    )
    assert stop["algoStatus"] == "NEW"
    assert stop["clientAlgoId"] == "stop-1"
    assert stop["triggerPrice"] == "59000.0"
    assert server.requests[-1].path == "/fapi/v1/algoOrder"
    opened = client.futures_get_open_orders(symbol="BTCUSDT", conditional=True)
    assert [o["algoId"] for o in opened] == [stop["algoId"]]
    assert client.futures_get_open_orders(symbol="BTCUSDT") == []
    dup = api_error(
        client.futures_create_algo_order,
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        triggerPrice="58000",
        closePosition="true",
        clientAlgoId="stop-1",
    )
    assert dup.code == -4116

    server.set_price("BTCUSDT", Decimal("59100"))
    assert server.algo_orders[0].status == "NEW"
    server.set_price("BTCUSDT", Decimal("58900"))
    assert server.position("BTCUSDT").amount == 0
    algo = client.futures_get_order(symbol="BTCUSDT", algoId=stop["algoId"])
    assert algo["algoStatus"] == "FINISHED"
    child = client.futures_get_order(symbol="BTCUSDT", orderId=int(algo["actualOrderId"]))
    assert (child["status"], child["origType"], child["executedQty"]) == (
        "FILLED",
        "STOP_MARKET",
        "0.010",
    )
    assert server.trades[-1].realized_pnl == Decimal("-11")  # (58900 - 60000) x 0.01

    immediate = api_error(
        client.futures_create_order,
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stopPrice="59000",
        quantity="0.010",
        reduceOnly="true",
    )
    assert immediate.code == -2021
    reduce_stop = client.futures_create_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stopPrice="58000",
        quantity="0.010",
        reduceOnly="true",
    )
    cancelled = client.futures_cancel_order(symbol="BTCUSDT", algoId=reduce_stop["algoId"])
    assert cancelled["msg"] == "success"
    assert api_error(client.futures_cancel_order, symbol="BTCUSDT", algoId=123).code == -2011
    assert [a.kind for a in server.accepted_orders] == ["order", "algo", "algo"]


def test_account_settings_endpoints(server: BinanceTestServer, client: Client) -> None:
    assert client.futures_get_position_mode() == {"dualSidePosition": False}
    assert api_error(client.futures_change_position_mode, dualSidePosition="false").code == -4059
    assert client.futures_change_leverage(symbol="BTCUSDT", leverage=5)["leverage"] == 5
    assert client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED")["code"] == 200
    again = api_error(client.futures_change_margin_type, symbol="BTCUSDT", marginType="ISOLATED")
    assert again.code == -4046
    rows = client._request_futures_api("get", "positionRisk", True, 2, data={})
    btc = next(r for r in rows if r["symbol"] == "BTCUSDT")
    assert (btc["leverage"], btc["marginType"]) == ("5", "isolated")
    assert client.futures_position_information() == []  # v3: only open positions


def test_funding_is_charged_at_the_symbols_interval(
    server: BinanceTestServer, client: Client, clock: OffsetClock
) -> None:
    market(client, "BUY", "0.010")
    next_funding = client.futures_mark_price(symbol="BTCUSDT")["nextFundingTime"]
    before = server.balance
    clock.offset_ms = next_funding - int(time.time() * 1000) + 1000
    client.timestamp_offset = clock.offset_ms
    (row,) = client.futures_income_history(incomeType="FUNDING_FEE")
    assert Decimal(row["income"]) == Decimal("-0.06")  # 0.01 x 60000 x 0.0001, paid by longs
    assert row["time"] == next_funding
    assert server.balance == before - Decimal("0.06")
    server.transfer(Decimal("500"))
    assert client.futures_income_history(incomeType="TRANSFER")[0]["income"] == "500"


# --- authentication --------------------------------------------------------------------------


def test_authentication_errors(server: BinanceTestServer) -> None:
    wrong_secret = api_error(make_client(server, secret="x" * 64).futures_account_balance)
    assert (wrong_secret.status_code, wrong_secret.code) == (400, -1022)
    wrong_key = api_error(make_client(server, key="y" * 64).futures_account_balance)
    assert (wrong_key.status_code, wrong_key.code) == (401, -2015)
    no_key = Client(None, SECRET, ping=False)
    no_key.FUTURES_URL = server.url
    assert api_error(no_key.futures_account_balance).code == -2014
    too_wide = make_client(server)
    too_wide.REQUEST_RECVWINDOW = 70_000
    assert api_error(too_wide.futures_account_balance).code == -1131
    assert make_client(server).futures_account_balance()[0]["asset"] == "USDT"


def test_timestamp_outside_recv_window_is_1021_until_the_offset_is_resynced(
    server: BinanceTestServer, client: Client, clock: OffsetClock
) -> None:
    clock.offset_ms = 20_000  # the server's clock runs 20 s ahead of ours
    error = api_error(client.futures_account_balance)
    assert (error.status_code, error.code) == (400, -1021)
    client.timestamp_offset = client.futures_time()["serverTime"] - int(time.time() * 1000)
    assert client.futures_account_balance()[0]["asset"] == "USDT"
    clock.offset_ms = -20_000  # now 20 s behind: "ahead of the server's time"
    assert api_error(client.futures_account_balance).code == -1021


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        (Fault("rate_limited", retry_after=7), 429, -1003, None),
        (Fault("banned", retry_after=120), 418, -1003, None),
        (Fault("server_error", status=502), 502, -1000, None),
        (Fault("unavailable_503"), 503, -1001, "Service Unavailable."),
        (Fault("throttled_503"), 503, -1008, None),
        (Fault("internal_503"), 503, -1001, None),
        (
            Fault("unknown_503", executed=False),
            503,
            -1000,
            "Unknown error, please check your request or try again later.",
        ),
        (Fault("timeout_1007", executed=False), 408, -1007, None),
        (Fault("timestamp_1021"), 400, -1021, None),
    ],
)
def test_faults_that_do_not_execute(
    server: BinanceTestServer,
    client: Client,
    fault: Fault,
    status: int,
    code: int,
    message: str | None,
) -> None:
    server.faults.push(Fault(**{**fault.__dict__, "method": "POST", "path": ORDER}))
    client.futures_ping()  # other requests are not hit
    error = api_error(market, client, "BUY", "0.002", "f-1")
    assert (error.status_code, error.code) == (status, code)
    if message:
        assert error.message == message
    if fault.retry_after is not None:
        assert error.response.headers["Retry-After"] == str(fault.retry_after)
    assert server.accepted_orders == []
    missing = api_error(client.futures_get_order, symbol="BTCUSDT", origClientOrderId="f-1")
    assert missing.code == -2013
    market(client, "BUY", "0.002", "f-1")  # the fault is used up
    assert [o.client_order_id for o in server.accepted_orders] == ["f-1"]
    assert server.faults.injected == [("POST", ORDER, fault.kind)]


@pytest.mark.parametrize("kind", ["unknown_503", "timeout_1007"])
def test_unknown_outcome_that_did_execute(
    server: BinanceTestServer, client: Client, kind: str
) -> None:
    server.faults.push(kind, path=ORDER, executed=True)  # type: ignore[arg-type]
    error = api_error(market, client, "BUY", "0.002", "u-1")
    assert error.status_code in (503, 408)
    assert [o.client_order_id for o in server.accepted_orders] == ["u-1"]
    found = client.futures_get_order(symbol="BTCUSDT", origClientOrderId="u-1")
    assert found["status"] == "FILLED"


def test_accepted_then_timeout(server: BinanceTestServer, client: Client) -> None:
    server.faults.push("accepted_then_timeout", path=ORDER)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        market(client, "BUY", "0.002", "t-1")
    assert time.monotonic() - started < 1.0
    assert [o.client_order_id for o in server.accepted_orders] == ["t-1"]
    assert client.futures_get_order(symbol="BTCUSDT", origClientOrderId="t-1")["status"] == "FILLED"


def test_accepted_then_reset(server: BinanceTestServer, client: Client) -> None:
    server.faults.push("accepted_then_reset", method="POST", path=ORDER)
    with pytest.raises(requests.exceptions.ConnectionError):
        resting_limit(client, "r-1")
    assert [o.client_order_id for o in server.accepted_orders] == ["r-1"]
    # Still open, so the same id is refused: the caller must query, not resubmit.
    assert api_error(resting_limit, client, "r-1").code == -4116


def test_slow_responds_correctly_after_a_delay(server: BinanceTestServer, client: Client) -> None:
    server.faults.push("slow", path=ORDER, delay=0.3)
    started = time.monotonic()
    assert market(client, "BUY", "0.002", "s-1")["clientOrderId"] == "s-1"
    assert time.monotonic() - started >= 0.3


def test_queued_fault_count_and_method_filter(server: BinanceTestServer, client: Client) -> None:
    server.faults.push("server_error", method="GET", path=ORDER, count=2)
    market(client, "BUY", "0.002", "c-1")  # POST is not matched
    for _ in range(2):
        assert api_error(client.futures_get_order, symbol="BTCUSDT", origClientOrderId="c-1").code
    assert client.futures_get_order(symbol="BTCUSDT", origClientOrderId="c-1")["status"] == "FILLED"
    assert server.faults.pending == []


def _outcomes(seed: int) -> list[str]:
    with BinanceTestServer(KEY, SECRET, ["BTCUSDT"]) as server:
        client = make_client(server)
        server.faults.random(
            0.4,
            ["rate_limited", "server_error", "unavailable_503"],
            seed=seed,
            path="/fapi/v1/time",
        )
        outcomes = []
        for _ in range(40):
            try:
                client.futures_time()
                outcomes.append("ok")
            except BinanceAPIException as error:
                outcomes.append(str(error.status_code))
            client.futures_ping()  # never hit: other path
        assert len(server.faults.injected) == sum(o != "ok" for o in outcomes)
        return outcomes


def test_random_fault_schedule_is_deterministic_per_seed() -> None:
    first = _outcomes(3)
    assert first == _outcomes(3)
    assert first != _outcomes(4)
    assert {"ok", "429", "500", "503"} <= set(first)


def test_weight_limit_gives_429_then_418() -> None:
    with BinanceTestServer(KEY, SECRET, ["BTCUSDT"], weight_limit=5, ban_after=1) as server:
        client = make_client(server)
        for _ in range(5):
            client.futures_ping()
        assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "5"
        limited = api_error(client.futures_ping)
        assert limited.status_code == 429
        assert int(limited.response.headers["Retry-After"]) >= 1
        banned = api_error(client.futures_ping)
        assert (banned.status_code, banned.code) == (418, -1003)
        assert banned.response.headers["Retry-After"] == "120"
