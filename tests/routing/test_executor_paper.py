"""``make run``'s default: the executor trades on the paper venue, tick after tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doctor.models import Heartbeat
from risk.models import RiskState
from routing.models import MarketBar, NavPoint, Order, PaperAccount, Position, SignalSource
from routing.signal_services import signal_sources_sync
from routing.tasks import executor_run_once
from tradingsite.locks import single_flight

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def paper(settings: Any) -> None:
    settings.VENUE = "paper"
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    signal_sources_sync()
    # Eager thresholds (operators set params in the admin), so a short test sees trades.
    for source in SignalSource.objects.all():
        eager = {"threshold": 0.05} if source.name == "momentum" else {"entry_z": 0.2}
        source.params = {**source.params, **eager}
        source.save()


def test_ticks_on_a_fresh_paper_account_trade_and_keep_the_books() -> None:
    first = executor_run_once(now=T0)
    assert first is not None

    # the fresh account came with hours of closed bars, and the state started from its wallet
    assert MarketBar.objects.filter(symbol="BTCUSDT").count() >= 300
    assert RiskState.objects.get().nav > 0
    for minute in range(1, 4):
        report = executor_run_once(now=T0 + timedelta(minutes=minute))
        assert report is not None

    entries = Order.objects.filter(purpose=Order.Purpose.ENTRY)
    assert entries.exclude(status=Order.Status.FILLED).count() == 0
    assert entries.count() > 0
    # every open position carries exactly one working protective stop
    for position in Position.objects.exclude(quantity=0):
        working = Order.objects.filter(
            symbol=position.symbol, purpose=Order.Purpose.STOP, status=Order.Status.OPEN
        )
        assert working.count() == 1
    assert NavPoint.objects.count() == 4
    assert Heartbeat.objects.filter(component="executor").count() == 4
    # the paper book was saved after each tick, and its positions match ours
    account = PaperAccount.objects.get()
    assert account.version == 4
    from routing.runtime import venue_session

    with venue_session(now_ms=int((T0 + timedelta(minutes=3)).timestamp() * 1000)) as venue:
        venue_positions = venue.positions()
    ours = {p.symbol: p.quantity for p in Position.objects.exclude(quantity=0)}
    assert ours == venue_positions


def test_a_tick_that_finds_the_lock_taken_is_skipped() -> None:
    with single_flight("executor-tick", ttl_seconds=30) as held:
        assert held.acquired
        assert executor_run_once(now=T0) is None
    assert not Order.objects.exists()


def test_a_built_in_signal_left_by_a_failed_tick_is_expired_not_traded() -> None:
    from decimal import Decimal

    from routing.models import Signal

    executor_run_once(now=T0)
    # a momentum signal a tick made and then failed before sizing (left NEW)
    leftover = Signal.objects.create(
        created_at=T0 + timedelta(seconds=20),
        source="momentum",
        symbol="BTCUSDT",
        side="BUY",
        strength=Decimal("1"),
        status=Signal.Status.NEW,
        decision_price=Decimal("60000"),
    )
    external = Signal.objects.create(
        created_at=T0 + timedelta(seconds=20),
        source="desk.alice",
        symbol="BTCUSDT",
        side="BUY",
        strength=Decimal("0.1"),
        status=Signal.Status.NEW,
    )

    assert executor_run_once(now=T0 + timedelta(seconds=40)) is not None

    leftover.refresh_from_db()
    external.refresh_from_db()
    assert leftover.status == Signal.Status.EXPIRED
    assert leftover.risk_reason == "left by a tick that did not finish"
    assert not Order.objects.filter(signal=leftover).exists()
    assert external.status != Signal.Status.NEW  # the external one was decided on
