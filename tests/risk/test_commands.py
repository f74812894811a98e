from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from risk.models import RiskSnapshot, RiskState
from risk.services import risk_halt, risk_state_load

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_risk_snapshot_writes_one_now() -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    output = run("risk_snapshot", "--note", "before the release")
    snapshot = RiskSnapshot.objects.get(note="before the release")
    assert f"snapshot #{snapshot.pk}" in output


def test_risk_restore_brings_back_the_chosen_snapshot() -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    before = RiskSnapshot.objects.get()
    risk_halt(reason="mistake", actor="olive")

    output = run("risk_restore", "--snapshot", str(before.pk), "--reason", "undo the mistake")

    assert "trading" in output
    assert not RiskState.objects.get().halted


def test_risk_restore_refuses_an_unknown_snapshot_and_changes_nothing() -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    halted = risk_halt(reason="keep", actor="olive")
    with pytest.raises(CommandError, match="no snapshot #999"):
        run("risk_restore", "--snapshot", "999", "--reason", "x")
    assert RiskState.objects.get().version == halted.version


@pytest.mark.parametrize(
    ("allow_prod_writes", "flag", "allowed"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_in_production_risk_restore_needs_both_allows(
    settings: Any, allow_prod_writes: bool, flag: bool, allowed: bool
) -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    before = RiskSnapshot.objects.get()
    halted = risk_halt(reason="keep", actor="olive")
    settings.ENV = "prod"
    settings.ALLOW_PROD_WRITES = allow_prod_writes
    args = ["risk_restore", "--snapshot", str(before.pk), "--reason", "restore in prod"]
    if flag:
        args.append("--allow-prod")

    if allowed:
        run(*args)
        assert not RiskState.objects.get().halted
    else:
        with pytest.raises(CommandError, match="overwrites production state"):
            run(*args)
        assert RiskState.objects.get().version == halted.version
