"""No exchange fault may duplicate or lose an order: ≥ 1,000 orders through python-binance's real
HTTP stack against the local Binance test server under a randomized fault schedule, and a
deliberately naive router that the same comparison must catch (the control that proves the
test can fail)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException
from django.utils import timezone
from requests.exceptions import RequestException

from risk.limits import Side
from risk.models import RiskLimit, RiskState
from risk.services import risk_state_load
from routing.binance_testserver import BinanceTestServer, FaultKind
from routing.models import Order
from routing.orders import (
    PENDING_ABANDONED_AFTER,
    order_create,
    order_send,
    orders_resolve_unknown,
)
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures
from tradingsite.guard import GuardContext, binance_client_for_writing

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

FAULT_KINDS: list[FaultKind] = [
    "rate_limited",
    "server_error",
    "unknown_503",
    "unavailable_503",
    "throttled_503",
    "timeout_1007",
    "timestamp_1021",
    "accepted_then_timeout",
    "accepted_then_reset",
    "slow",
]
ORDERS = 1000
QUANTITY = Decimal("0.002")  # above the 100 USDT minimum notional


@pytest.fixture
def server() -> Iterator[BinanceTestServer]:
    # The client's timeout (below) is shorter than the held responses, so
    # "accepted then timeout" really times out inside python-binance.
    with BinanceTestServer(
        balance=Decimal("1000000"), seed=11, slow_seconds=0.05, timeout_seconds=0.6
    ) as running:
        yield running


@pytest.fixture
def client(server: BinanceTestServer, settings: Any) -> Any:
    settings.BINANCE_API_KEY = server.api_key
    settings.BINANCE_API_SECRET = server.api_secret
    settings.BINANCE_HTTP_TIMEOUT = 0.3
    context = GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
    return binance_client_for_writing(context=context)


@dataclass
class Waits:
    seconds: list[float]

    def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)  # recorded, never slept: the suite stays fast


def venue_for(client: Any, waits: Waits) -> BinanceFutures:
    policy = RetryPolicy(
        max_attempts=8, max_total_seconds=3600, sleep=waits.sleep, random=lambda: 0.5
    )
    return BinanceFutures(client=client, policy=policy)


@dataclass(frozen=True)
class Comparison:
    duplicates: int  # orders the venue accepted beyond one per local intent
    unknown_to_us: int  # accepted orders whose client id we never recorded
    wrong_status: list[str]  # accepted, but not recorded as filled here
    lost: list[str]  # recorded as placed (or still unknown) here, but not on the venue


def compare(server: BinanceTestServer, local: dict[str, str]) -> Comparison:
    """``local`` maps each intent's client order id to its local status."""
    accepted = Counter(order.client_order_id for order in server.accepted_orders)
    return Comparison(
        duplicates=sum(count - 1 for count in accepted.values()),
        unknown_to_us=sum(count for cid, count in accepted.items() if cid not in local),
        wrong_status=[cid for cid in accepted if cid in local and local[cid] != "filled"],
        lost=[
            cid
            for cid, status in local.items()
            if cid not in accepted and status in {"filled", "open", "unknown", "submitting"}
        ],
    )


def local_orders() -> dict[str, str]:
    return dict(Order.objects.values_list("client_order_id", "status"))


def test_a_thousand_orders_under_random_faults_are_neither_duplicated_nor_lost(
    server: BinanceTestServer, client: Any
) -> None:
    # given an account that may trade, and a venue that fails one order request in four
    risk_state_load(initial_nav=Decimal("1000000"))
    RiskLimit.objects.filter(symbol="").update(kill_switch=False)
    server.faults.random(rate=0.25, kinds=FAULT_KINDS, seed=5, path="/fapi/v1/order")
    waits = Waits([])
    venue = venue_for(client, waits)

    # when the router sends 1,000 orders one after another
    for n in range(ORDERS):
        order = order_create(
            symbol="BTCUSDT", side=Side.BUY if n % 2 else Side.SELL, quantity=QUANTITY
        )
        order_send(order=order, venue=venue)
    # and reconciliation resolves whatever was left unknown (faults still on)
    for _ in range(10):
        if orders_resolve_unknown(venue=venue)["still_unknown"] == 0:
            break

    # then every order the venue accepted is exactly one of ours, known with its status
    result = compare(server, local_orders())
    assert result == Comparison(duplicates=0, unknown_to_us=0, wrong_status=[], lost=[])
    statuses = Counter(local_orders().values())
    assert statuses["filled"] == len(server.accepted_orders)
    assert statuses["filled"] + statuses["rejected"] == ORDERS
    assert statuses["filled"] > 0.9 * ORDERS
    # the faults really happened, including the ones that hide an accepted order
    injected = Counter(kind for _, _, kind in server.faults.injected)
    assert injected["accepted_then_timeout"] > 0
    assert injected["accepted_then_reset"] > 0
    assert injected["unknown_503"] > 0
    assert Order.objects.filter(attempts__gt=1).exists()
    assert waits.seconds  # back-off was asked for (and not slept)


def naive_send(*, venue_client: Any, symbol: str, side: Side, quantity: Decimal) -> str:
    """What a router without idempotency does: on a timeout or error, send again (a new id).
    Only the last id is recorded, as such a router would."""
    last = ""
    for attempt in range(5):
        last = f"naive-{time.monotonic_ns()}-{attempt}"
        try:
            venue_client.futures_create_order(
                symbol=symbol,
                side=str(side),
                type="MARKET",
                quantity=format(quantity, "f"),
                newClientOrderId=last,
            )
            return last
        except (RequestException, BinanceAPIException):
            continue
    return last


def test_the_comparison_catches_a_naive_router_that_resends_on_timeout(
    server: BinanceTestServer, client: Any
) -> None:
    server.faults.random(rate=0.25, kinds=FAULT_KINDS, seed=5, path="/fapi/v1/order")
    local: dict[str, str] = {}
    for n in range(300):
        cid = naive_send(
            venue_client=client,
            symbol="BTCUSDT",
            side=Side.BUY if n % 2 else Side.SELL,
            quantity=QUANTITY,
        )
        local[cid] = "filled"

    result = compare(server, local)

    assert result.unknown_to_us > 0  # orders placed twice: the same assertion fails


def test_retry_after_is_honoured_between_attempts(server: BinanceTestServer, client: Any) -> None:
    risk_state_load(initial_nav=Decimal("1000000"))
    server.faults.push("rate_limited", path="/fapi/v1/order", retry_after=7)
    waits = Waits([])

    order = order_send(
        order=order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY),
        venue=venue_for(client, waits),
    )

    assert order.status == Order.Status.FILLED
    assert waits.seconds == [7.0]
    assert len(server.accepted_orders) == 1


def test_a_ban_halts_routing_and_the_next_order_is_not_sent(
    server: BinanceTestServer, client: Any
) -> None:
    risk_state_load(initial_nav=Decimal("1000000"))
    server.faults.push("banned", path="/fapi/v1/order", retry_after=120)
    venue = venue_for(client, Waits([]))

    banned = order_send(
        order=order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY), venue=venue
    )
    after = order_send(
        order=order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY), venue=venue
    )

    assert banned.status == Order.Status.REJECTED
    state = RiskState.objects.get()
    assert state.halted
    assert "418" in state.halt_reason
    assert after.status == Order.Status.CANCELED
    assert "halted" in after.last_error
    assert server.accepted_orders == []


def test_a_reduce_only_order_is_still_sent_while_halted(
    server: BinanceTestServer, client: Any
) -> None:
    from risk.services import risk_halt

    risk_state_load(initial_nav=Decimal("1000000"))
    venue = venue_for(client, Waits([]))
    order_send(order=order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY), venue=venue)
    risk_halt(reason="test", actor="olive")

    closing = order_send(
        order=order_create(
            symbol="BTCUSDT",
            side=Side.SELL,
            quantity=QUANTITY,
            reduce_only=True,
            purpose=Order.Purpose.FLATTEN,
        ),
        venue=venue,
    )

    assert closing.status == Order.Status.FILLED
    assert server.position("BTCUSDT").amount == 0


def test_an_order_left_unknown_by_a_crash_is_resolved_by_reconciliation(
    server: BinanceTestServer, client: Any
) -> None:
    # given an order that was sent, after which the process died before recording the answer
    risk_state_load(initial_nav=Decimal("1000000"))
    venue = venue_for(client, Waits([]))
    placed = order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY)
    client.futures_create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        quantity=format(QUANTITY, "f"),
        newClientOrderId=placed.client_order_id,
    )
    Order.objects.filter(pk=placed.pk).update(status=Order.Status.SUBMITTING, attempts=1)
    # and one that never reached the venue
    never = order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY)
    Order.objects.filter(pk=never.pk).update(status=Order.Status.SUBMITTING, attempts=1)

    # when the restarted process reconciles
    counts = orders_resolve_unknown(venue=venue)

    # then the placed one is adopted and the other is not sent again
    assert counts == {"adopted": 1, "not_placed": 1, "still_unknown": 0}
    placed.refresh_from_db()
    never.refresh_from_db()
    assert placed.status == Order.Status.FILLED
    assert never.status == Order.Status.CANCELED
    assert len(server.accepted_orders) == 1


def test_an_order_recorded_by_a_tick_that_died_before_sending_is_closed_not_sent(
    server: BinanceTestServer, client: Any
) -> None:
    # given an order a tick recorded and then died before sending (it stays PENDING), and one
    # that a running tick has just recorded
    risk_state_load(initial_nav=Decimal("1000000"))
    venue = venue_for(client, Waits([]))
    abandoned = order_create(symbol="BTCUSDT", side=Side.BUY, quantity=QUANTITY)
    Order.objects.filter(pk=abandoned.pk).update(
        updated_at=timezone.now() - PENDING_ABANDONED_AFTER - timedelta(seconds=1)
    )
    fresh = order_create(symbol="BTCUSDT", side=Side.SELL, quantity=QUANTITY)

    # when reconciliation resolves what is not final
    counts = orders_resolve_unknown(venue=venue)

    # then the abandoned intent is closed without reaching the venue; the fresh one is left to
    # the tick that is about to send it
    assert counts == {"adopted": 0, "not_placed": 1, "still_unknown": 0}
    abandoned.refresh_from_db()
    fresh.refresh_from_db()
    assert abandoned.status == Order.Status.CANCELED
    assert "never sent" in abandoned.last_error
    assert fresh.status == Order.Status.PENDING
    assert server.accepted_orders == []
