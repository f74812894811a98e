"""What the replay tests share: a live paper session that trades within minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from routing.models import SignalSource
from routing.signal_services import signal_sources_sync
from routing.tasks import executor_run_once

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def eager_paper_trading(settings: Any, global_limits: Any) -> None:
    """The paper venue with eager signal sources (operators set params in the admin), so a
    short session trades; stops far away: a stop's fill depends on the path inside a bar,
    which a replay over stored bars sees only as open/low/high/close (the divergence
    report's business)."""
    settings.VENUE = "paper"
    settings.SYMBOLS = ["BTCUSDT"]
    signal_sources_sync()
    for source in SignalSource.objects.exclude(name="ml"):
        eager = {"threshold": 0.05} if source.name == "momentum" else {"entry_z": 0.2}
        source.params = {**source.params, **eager}
        source.save()
    global_limits.stop_distance = Decimal("0.5")
    global_limits.save()


def live_session(minutes: int) -> None:
    """A live paper session ticking at each bar close from ``T0`` (the first tick makes a
    day of bars)."""
    for minute in range(minutes):
        assert executor_run_once(now=T0 + timedelta(minutes=minute)) is not None
