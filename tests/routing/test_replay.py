"""Replay: the live executor's own steps over stored bars, in its own database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from routing.models import Fill, ReplayRun, SignalSource
from routing.replay import replay_create, replay_start
from routing.signal_services import signal_sources_sync
from routing.tasks import executor_run_once
from tradingsite.replaydb import replay_database, replay_database_drop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("global_limits")]

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def paper(settings: Any, global_limits: Any) -> None:
    settings.VENUE = "paper"
    settings.SYMBOLS = ["BTCUSDT"]
    signal_sources_sync()
    for source in SignalSource.objects.all():
        eager = {"threshold": 0.05} if source.name == "momentum" else {"entry_z": 0.2}
        source.params = {**source.params, **eager}
        source.save()
    global_limits.stop_distance = Decimal("0.5")
    global_limits.save()


def _trades() -> list[tuple[Any, ...]]:
    return [
        (f.filled_at, f.symbol, f.side, f.quantity, f.price, f.fee)
        for f in Fill.objects.order_by("filled_at", "id")
    ]


def test_replay_reproduces_a_live_paper_session() -> None:
    minutes = 90
    for minute in range(minutes):
        executor_run_once(now=T0 + timedelta(minutes=minute))
    live = _trades()
    assert live
    run = replay_create(
        start=T0 - timedelta(milliseconds=1),
        end=T0 + timedelta(minutes=minutes - 1, milliseconds=-1),
        symbols=["BTCUSDT"],
        actor="test",
    )
    try:
        replay_start(run.pk)
        run.refresh_from_db()
        assert run.status == ReplayRun.Status.DONE, run.error
        with replay_database(run.pk):
            replayed = _trades()
        print(run.bars_per_second, run.summary)
        assert replayed == live
    finally:
        replay_database_drop(run.pk)
