"""The state engine against a plain reference written here, in exact rational arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from risk.limits import Limits
from risk.state import nav_observed, state_initial

T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
LIMITS = Limits(
    max_order_notional=Decimal(1000),
    max_position_notional=Decimal(5000),
    max_gross_exposure=Decimal(10000),
    max_leverage=Decimal(3),
    max_daily_loss=Decimal("0.05"),
    max_drawdown=Decimal("0.15"),
    max_open_orders=10,
    loss_streak_limit=5,
    loss_streak_cooldown=timedelta(hours=1),
    min_liquidation_distance=Decimal("0.2"),
    autotune_floor=Decimal("0.25"),
    kill_switch=False,
)
TOLERANCE = Fraction(1, 10**8)

amounts = st.decimals(min_value=Decimal("-500"), max_value=Decimal("500"), places=2)
flows = st.one_of(
    st.just(Decimal(0)),
    st.decimals(min_value=Decimal("-2000"), max_value=Decimal("5000"), places=2),
)
steps = st.lists(
    st.tuples(amounts, flows, st.integers(min_value=1, max_value=240)), min_size=1, max_size=60
)


def reference(
    start: Decimal, events: list[tuple[Decimal, Decimal, int]]
) -> list[dict[str, Fraction]]:
    """NAV, daily PnL, peak NAV, drawdown and daily loss after each event, from the definitions:
    a period's return excludes its cash flow; drawdown and daily loss use the compounded returns."""
    nav = Fraction(start)
    growth = Fraction(1)
    peak_growth = Fraction(1)
    day = T0.date()
    day_start_nav, day_start_growth, day_flows = nav, growth, Fraction(0)
    at = T0
    out = []
    for pnl, flow, minutes in events:
        at += timedelta(minutes=minutes)
        if at.date() != day:
            day, day_start_nav, day_start_growth, day_flows = at.date(), nav, growth, Fraction(0)
        new_nav = nav + Fraction(pnl) + Fraction(flow)
        if nav > 0:
            growth = max(Fraction(0), growth * (new_nav - Fraction(flow)) / nav)
        nav = new_nav
        day_flows += Fraction(flow)
        peak_growth = max(peak_growth, growth)
        out.append(
            {
                "nav": nav,
                "daily_pnl": nav - day_start_nav - day_flows,
                "drawdown": 1 - growth / peak_growth if peak_growth else Fraction(0),
                "daily_loss": max(Fraction(0), 1 - growth / day_start_growth)
                if day_start_growth
                else Fraction(0),
                "peak_nav": nav * peak_growth / growth if growth else nav,
            }
        )
    return out


@settings(max_examples=300, deadline=None)
@given(
    start=st.decimals(min_value=Decimal("100"), max_value=Decimal("100000"), places=2), events=steps
)
def test_the_engine_matches_the_reference_for_any_fills_and_cash_flows(
    start: Decimal, events: list[tuple[Decimal, Decimal, int]]
) -> None:
    values = state_initial(nav=start, at=T0)
    at = T0
    expected = reference(start, events)
    for (pnl, flow, minutes), want in zip(events, expected, strict=True):
        at += timedelta(minutes=minutes)
        values, _ = nav_observed(
            values, nav=values.nav + pnl + flow, cash_flow=flow, at=at, limits=LIMITS
        )

        assert Fraction(values.nav) == want["nav"]
        assert Fraction(values.daily_pnl) == want["daily_pnl"]
        assert abs(Fraction(values.drawdown) - want["drawdown"]) <= TOLERANCE
        assert abs(Fraction(values.daily_loss) - want["daily_loss"]) <= TOLERANCE
        peak = want["peak_nav"]
        assert abs(Fraction(values.peak_nav) - peak) <= TOLERANCE * max(Fraction(1), abs(peak))
        assert values.drawdown >= 0
        # The halt latches as soon as a loss limit is exceeded (away from rounding distance).
        drawdown, daily_loss = want["drawdown"], want["daily_loss"]
        if (
            drawdown > Fraction(LIMITS.max_drawdown) + TOLERANCE
            or daily_loss > Fraction(LIMITS.max_daily_loss) + TOLERANCE
        ):
            assert values.halted
        elif (
            drawdown < Fraction(LIMITS.max_drawdown) - TOLERANCE
            and daily_loss < Fraction(LIMITS.max_daily_loss) - TOLERANCE
        ):
            assert not values.halted
        if values.halted:
            break
