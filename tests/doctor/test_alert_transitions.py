"""Every transition a person must hear about sends one alert, and one more when it recovers:
the kill switch, a trading halt, a venue ban (HTTP 418) and a reconciliation difference."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from doctor.models import Alert
from doctor.tasks import alert_send_task
from risk.limits import Side
from risk.services import (
    kill_switch_set,
    risk_halt,
    risk_nav_observe,
    risk_snapshot_restore,
    risk_snapshot_write,
    risk_state_load,
    risk_unhalt,
)
from routing.binance_testserver import BinanceTestServer
from routing.orders import order_create, order_send
from routing.reconcile import reconcile
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures
from tests.doctor.alert_receiver import AlertReceiver, channels_configure, rate_limits_reset
from tradingsite.guard import GuardContext, binance_client_for_writing

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


@pytest.fixture(autouse=True)
def receiver(settings: Any) -> Iterator[AlertReceiver]:
    """Every test here alerts the generic webhook only, on a local receiver."""
    rate_limits_reset()
    with AlertReceiver() as running:
        channels_configure(settings, running.url, slack=False, telegram=False)
        yield running


def delivered(receiver: AlertReceiver) -> list[tuple[str, str, str]]:
    """Send every pending alert (as the worker would) and list what the receiver got."""
    for alert in Alert.objects.filter(status=Alert.Status.PENDING).order_by("id"):
        alert_send_task.apply(args=(alert.pk,))
    return [(r.body["event"], r.body["component"], r.body["code"]) for r in receiver.received]


class TestKillSwitch:
    def test_switching_it_on_alerts_once_and_off_sends_the_recovery(
        self, receiver: AlertReceiver
    ) -> None:
        kill_switch_set(on=True, actor="alice", reason="exchange maintenance")
        kill_switch_set(on=True, actor="bob", reason="still maintenance")  # no change: no alert
        assert delivered(receiver) == [("opened", "risk", "kill_switch")]
        assert receiver.received[0].body["severity"] == "warning"
        assert "alice: exchange maintenance" in receiver.received[0].body["text"]

        kill_switch_set(on=False, actor="alice", reason="maintenance over")
        kill_switch_set(on=False, actor="alice", reason="again")

        assert delivered(receiver) == [
            ("opened", "risk", "kill_switch"),
            ("recovered", "risk", "kill_switch"),
        ]


class TestTradingHalt:
    def test_a_halt_alerts_and_the_un_halt_sends_the_recovery(
        self, receiver: AlertReceiver
    ) -> None:
        risk_state_load(initial_nav=Decimal("10000"))
        risk_halt(reason="manual stop", actor="alice")
        risk_halt(reason="manual stop again", actor="bob")  # already halted: nothing new

        assert delivered(receiver) == [("opened", "risk", "halted")]
        assert receiver.received[0].body["severity"] == "critical"

        risk_unhalt(actor="alice", note="checked")

        assert delivered(receiver)[1:] == [("recovered", "risk", "halted")]

    def test_a_drawdown_halt_alerts_too(self, receiver: AlertReceiver) -> None:
        risk_state_load(initial_nav=Decimal("10000"))
        risk_nav_observe(nav=Decimal("11000"))
        risk_nav_observe(nav=Decimal("9800"))  # 10.9 % below the peak: max_drawdown is 10 %

        assert delivered(receiver) == [("opened", "risk", "halted")]
        assert "max_drawdown" in receiver.received[0].body["message"]

    def test_restoring_a_snapshot_from_before_the_halt_sends_the_recovery(
        self, receiver: AlertReceiver
    ) -> None:
        risk_state_load(initial_nav=Decimal("10000"))
        before = risk_snapshot_write(actor="alice", note="before")
        risk_halt(reason="manual stop", actor="alice")

        risk_snapshot_restore(snapshot_id=before.pk, actor="alice", note="roll back")

        assert delivered(receiver) == [
            ("opened", "risk", "halted"),
            ("recovered", "risk", "halted"),
        ]


@pytest.fixture
def server() -> Iterator[BinanceTestServer]:
    with BinanceTestServer(balance=Decimal("1000000")) as running:
        yield running


@pytest.fixture
def client(server: BinanceTestServer, settings: Any) -> Any:
    """python-binance's client: the venue's, and a person trading by hand on the same account."""
    settings.BINANCE_API_KEY = server.api_key
    settings.BINANCE_API_SECRET = server.api_secret
    return binance_client_for_writing(
        context=GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
    )


@pytest.fixture
def venue(client: Any) -> BinanceFutures:
    risk_state_load(initial_nav=Decimal("1000000"))
    return BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))


def by_hand(client: Any, client_order_id: str) -> None:
    """A resting order placed on the account by someone else than this system."""
    client.futures_create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price="50000",
        newClientOrderId=client_order_id,
    )


class TestVenue:
    def test_a_ban_alerts_and_the_next_clean_reconciliation_sends_the_recovery(
        self, receiver: AlertReceiver, server: BinanceTestServer, venue: BinanceFutures
    ) -> None:
        server.faults.push("banned", path="/fapi/v1/order", retry_after=120)

        order_send(
            order=order_create(symbol="BTCUSDT", side=Side.BUY, quantity=Decimal("0.002")),
            venue=venue,
        )

        # the ban and the halt it causes are two incidents, each alerted once
        assert sorted(delivered(receiver)) == [
            ("opened", "risk", "halted"),
            ("opened", "venue", "venue_banned"),
        ]

        # the venue answers again (the halt stays until a person lifts it)
        assert reconcile(venue=venue, symbols=("BTCUSDT",)).clean

        assert delivered(receiver)[2:] == [("recovered", "venue", "venue_banned")]


class TestReconciliation:
    def test_a_difference_alerts_and_the_next_clean_run_sends_the_recovery(
        self, receiver: AlertReceiver, client: Any, venue: BinanceFutures
    ) -> None:
        by_hand(client, "by-hand-1")

        report = reconcile(venue=venue, symbols=("BTCUSDT",))
        reconcile(venue=venue, symbols=("BTCUSDT",))  # the foreign order was cancelled: clean

        assert not report.clean
        assert delivered(receiver) == [
            ("opened", "reconcile", "foreign_order"),
            ("recovered", "reconcile", "foreign_order"),
        ]

        # a later foreign order is a new incident, so it alerts again
        by_hand(client, "by-hand-2")
        reconcile(venue=venue, symbols=("BTCUSDT",))

        assert delivered(receiver)[2:] == [("opened", "reconcile", "foreign_order")]
        assert "by-hand-2" in receiver.received[2].body["message"]
