from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from risk.models import AutotuneEvent, RiskState
from risk.selectors import limits_configured, limits_effective
from risk.services import risk_autotune, risk_state_load

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


def test_calm_returns_change_nothing() -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    calm = np.random.default_rng(1).normal(0.002, 0.005, size=120)
    assert risk_autotune(returns=calm) is None
    assert AutotuneEvent.objects.count() == 0
    assert RiskState.objects.get().size_multiplier == Decimal(1)


def test_rough_returns_scale_size_limits_down_and_record_the_event() -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    rough = np.random.default_rng(2).normal(0.0, 0.08, size=120)

    event = risk_autotune(returns=rough)

    assert event is not None
    state = RiskState.objects.get()
    assert state.size_multiplier == event.new_multiplier < Decimal(1)
    configured = limits_configured()
    effective = limits_effective(multiplier=state.size_multiplier)
    assert effective.max_order_notional < configured.max_order_notional
    assert effective.max_order_notional >= configured.max_order_notional * configured.autotune_floor
    # the loss limits and the kill switch are never tuned
    assert (effective.max_daily_loss, effective.max_drawdown, effective.kill_switch) == (
        configured.max_daily_loss,
        configured.max_drawdown,
        configured.kill_switch,
    )
    assert Decimal(event.new_limits["max_order_notional"]) == effective.max_order_notional
    assert Decimal(event.old_limits["max_order_notional"]) == configured.max_order_notional
    assert event.inputs
    assert event.reason
    assert state.effective_limits["max_order_notional"] == event.new_limits["max_order_notional"]
