from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from doctor.models import Incident
from risk.models import RiskLimit, RiskSnapshot, RiskState
from risk.selectors import row_checksum_ok
from risk.services import (
    RiskStateConflict,
    RiskStateUnavailable,
    kill_switch_set,
    risk_halt,
    risk_nav_observe,
    risk_snapshot_restore,
    risk_snapshot_write,
    risk_state_load,
    risk_trade_closed,
    risk_unhalt,
)
from tradingsite.models import OutboxEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_fresh_account_starts_from_its_first_nav() -> None:
    row = risk_state_load(initial_nav=Decimal("10000"), at=T0)

    assert (row.nav, row.halted, row.version) == (Decimal("10000"), False, 0)
    assert row_checksum_ok(row)
    assert RiskSnapshot.objects.count() == 1


def test_without_a_row_or_snapshot_or_initial_nav_it_refuses_to_guess() -> None:
    with pytest.raises(RiskStateUnavailable):
        risk_state_load()
    assert Incident.objects.filter(code="state_unavailable").exists()


def test_a_drawdown_beyond_the_limit_latches_the_halt_and_snapshots_it() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    # max_drawdown defaults to 0.10: 11000 -> 9899 is a 10.009 % drawdown
    risk_nav_observe(nav=Decimal("11000"), at=T0 + timedelta(minutes=1))
    row = risk_nav_observe(nav=Decimal("9899"), at=T0 + timedelta(minutes=2))

    assert row.halted
    assert "max_drawdown" in row.halt_reason
    assert RiskSnapshot.objects.filter(state__halted=True).exists()
    assert Incident.objects.filter(component="risk", code="halted", resolved_at=None).exists()
    # recovering does not lift the halt: only a person does
    row = risk_nav_observe(nav=Decimal("11000"), at=T0 + timedelta(minutes=3))
    assert row.halted


def test_a_deposit_is_not_profit() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    risk_nav_observe(nav=Decimal("9900"), at=T0 + timedelta(minutes=1))
    row = risk_nav_observe(
        nav=Decimal("19900"), cash_flow=Decimal("10000"), at=T0 + timedelta(minutes=2)
    )
    assert row.day_cash_flows == Decimal("10000")
    assert row.nav - row.day_start_nav - row.day_cash_flows == Decimal("-100")
    # the deposit neither hides nor adds loss: 1 % lost, then 300 of 19900 (1.51 %)
    # compounds to a 2.49 % daily loss, inside the 3 % limit ...
    row = risk_nav_observe(nav=Decimal("19600"), at=T0 + timedelta(minutes=3))
    assert not row.halted
    # ... and 200 of 19600 more makes it 3.49 %: halted
    row = risk_nav_observe(nav=Decimal("19400"), at=T0 + timedelta(minutes=4))
    assert row.halted
    assert "max_daily_loss" in row.halt_reason


def test_a_restart_resumes_the_same_halted_state() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    halted = risk_halt(reason="operator test", actor="olive", at=T0)

    resumed = risk_state_load()

    assert resumed.pk == halted.pk
    assert (resumed.halted, resumed.halt_reason, resumed.version) == (
        True,
        "operator test",
        halted.version,
    )


def test_a_corrupt_row_is_restored_from_the_newest_valid_snapshot() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    halted = risk_halt(reason="keep me", actor="olive", at=T0)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE risk_riskstate SET halted = %s", [False])

    restored = risk_state_load()

    assert restored.halted
    assert restored.halt_reason == "keep me"
    assert restored.version == halted.version + 1
    assert Incident.objects.filter(code="state_restored").exists()


def test_a_corrupt_snapshot_is_skipped_and_reported() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    good = risk_halt(reason="good", actor="olive", at=T0)
    bad = risk_snapshot_write(note="to be damaged")
    RiskSnapshot.objects.filter(pk=bad.pk).update(state={**bad.state, "halted": False})
    RiskState.objects.all().delete()

    restored = risk_state_load()

    assert restored.halted
    assert restored.halt_reason == "good"
    assert restored.version == good.version + 1
    assert Incident.objects.filter(code="snapshot_corrupt").exists()


def test_unhalting_an_account_that_is_not_halted_is_a_conflict() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    with pytest.raises(RiskStateConflict):
        risk_unhalt(actor="olive", note="why not")


def test_an_operator_can_restore_a_chosen_snapshot() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    before = risk_snapshot_write(note="before")
    risk_halt(reason="oops", actor="olive", at=T0)

    row = risk_snapshot_restore(snapshot_id=before.pk, actor="olive", note="undo")

    assert not row.halted
    assert RiskSnapshot.objects.filter(reason="restore", actor="olive").exists()


def test_five_losing_trades_start_the_cooldown() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    for _ in range(5):
        row = risk_trade_closed(pnl=Decimal("-1"), at=T0)
    assert row.cooldown_until == T0 + timedelta(hours=1)
    assert row.loss_streak == 0


def test_every_change_is_mirrored_through_the_outbox() -> None:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    risk_nav_observe(nav=Decimal("10100"), at=T0 + timedelta(minutes=1))
    newest = OutboxEntry.objects.filter(collection="risk_state").last()
    assert newest is not None
    assert Decimal(newest.payload["nav"]) == Decimal("10100")


def test_the_kill_switch_change_is_in_the_limits_history() -> None:
    kill_switch_set(on=True, actor="olive", reason="exchange incident")
    limits = RiskLimit.objects.get(symbol="")
    assert limits.kill_switch
    newest = limits.history.first()
    assert newest.history_change_reason == "olive: exchange incident"


def test_the_periodic_snapshot_waits_for_a_state_and_then_for_its_interval() -> None:
    from risk.tasks import risk_snapshot_periodic_task

    assert risk_snapshot_periodic_task() is None  # no account state yet: nothing to keep
    assert not Incident.objects.exists()
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    RiskSnapshot.objects.update(created_at=T0)  # the creation snapshot is old now

    first = risk_snapshot_periodic_task()
    second = risk_snapshot_periodic_task()

    assert first is not None
    assert RiskSnapshot.objects.get(pk=first).reason == "periodic"
    assert second is None  # the newest snapshot is younger than the interval
