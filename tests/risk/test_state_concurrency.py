"""Two writers at once: a halt is never lost (PostgreSQL in CI, SQLite locally)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from risk.models import RiskSnapshot, RiskState
from risk.services import risk_halt, risk_nav_observe, risk_state_load
from risk.state import nav_observed
from tests.conftest import ROOT, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("global_limits")]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_halt_set_while_a_nav_update_is_in_flight_survives_it(monkeypatch: Any) -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    slow_started = threading.Event()
    original = nav_observed

    def slow_nav_observed(*args: Any, **kwargs: Any) -> Any:
        slow_started.set()
        time.sleep(1.0)  # the update is in flight: read done, write not yet
        return original(*args, **kwargs)

    monkeypatch.setattr("risk.services.nav_observed", slow_nav_observed)
    errors: list[BaseException] = []

    def update() -> None:
        try:
            risk_nav_observe(nav=Decimal("10050"), at=T0)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    updater = threading.Thread(target=update)
    updater.start()
    assert slow_started.wait(timeout=30)
    risk_halt(reason="halted mid-update", actor="olive", at=T0)
    updater.join(timeout=60)

    assert errors == []
    row = RiskState.objects.get()
    assert row.halted
    assert row.halt_reason == "halted mid-update"
    assert row.nav == Decimal("10050")


def test_two_processes_writing_at_once_lose_no_update_and_no_halt() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    updates = 60
    code = (
        "import django; django.setup()\n"
        "from decimal import Decimal\n"
        "from risk.services import risk_nav_observe\n"
        f"for i in range({updates}):\n"
        "    risk_nav_observe(nav=Decimal(10000 + i + 1))\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(DJANGO_SETTINGS_MODULE="tradingsite.settings"),
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    risk_halt(reason="operator halt during updates", actor="olive")
    _, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0, stderr

    row = RiskState.objects.get()
    assert row.halted
    assert row.halt_reason == "operator halt during updates"
    assert row.nav == Decimal(10000 + updates)
    # every write got its own version: creation (0), 60 NAV updates and one halt
    assert row.version == updates + 1
    versions = list(RiskSnapshot.objects.values_list("state_version", flat=True))
    assert len(versions) == len(set(versions))
