"""What the Overview and Router Health tabs show, and the operators' controls on them.

Selectors return JSON-ready dicts (the pages render them and the ``/api/v1/`` endpoints
return them, so both always agree); history comes from the router health cache
(``routing.health``), never from raw fills.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Subquery

from doctor.models import Heartbeat
from risk.models import RiskLimit, RiskState
from risk.services import kill_switch_set, risk_unhalt
from routing.accounting import unrealized_pnl
from routing.books import position_state
from routing.health import (
    DEFAULT_WINDOW,
    EXECUTION_COLUMNS,
    PERFORMANCE_COLUMNS,
    WINDOWS,
    last_closes,
    metric_display,
    nav_curve_summary,
    recent_fills,
    router_health_summary,
)
from routing.models import Order, Position
from routing.tasks import flatten_task
from tradingsite.accounts import audit_log

LIVE_STOP = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
LAST_TICKS = 10


def trading_status() -> dict[str, Any]:
    """Whether trading is halted (and why) and whether the kill switch is on: every tab's
    banner."""
    # One query: the dashboard's every page pays it.
    kill_switch = RiskLimit.objects.filter(symbol="").values("kill_switch")[:1]
    state = (
        RiskState.objects.annotate(kill=Subquery(kill_switch))
        .values("halted", "halt_reason", "halted_at", "kill")
        .first()
    )
    if state is None:
        kill = RiskLimit.objects.filter(symbol="").values_list("kill_switch", flat=True).first()
    else:
        kill = state["kill"]
    return {
        "configured": state is not None,
        "halted": bool(state and state["halted"]),
        "halt_reason": state["halt_reason"] if state else "",
        "halted_at": state["halted_at"].isoformat() if state and state["halted_at"] else None,
        "kill_switch": bool(kill),
    }


def risk_status() -> dict[str, Any] | None:
    row = RiskState.objects.first()
    if row is None:
        return None
    drawdown = 1 - row.index / row.peak_index if row.peak_index > 0 else 0
    return {
        "nav": metric_display("realized_pnl", float(row.nav)),
        "drawdown": f"{float(drawdown) * 100:.2f}%",
        "size_multiplier": str(row.size_multiplier),
        "loss_streak": row.loss_streak,
        "cooldown_until": row.cooldown_until.isoformat() if row.cooldown_until else None,
        "updated_at": row.updated_at.isoformat(),
    }


def positions_with_stops() -> list[dict[str, Any]]:
    """Open positions, each with its protective stop(s) on the venue and its unrealised PnL at
    the last closed bar."""
    stops: dict[str, list[str]] = {}
    for symbol, stop_price, quantity in Order.objects.filter(
        purpose=Order.Purpose.STOP, status__in=LIVE_STOP
    ).values_list("symbol", "stop_price", "quantity"):
        stops.setdefault(symbol, []).append(f"{quantity} at {stop_price}")
    positions = list(Position.objects.exclude(quantity=0).order_by("symbol"))
    marks = last_closes(position.symbol for position in positions)
    rows = []
    for position in positions:
        mark = marks.get(position.symbol)
        unrealized = (
            unrealized_pnl(position_state(position), mark_price=mark) if mark is not None else None
        )
        rows.append(
            {
                "symbol": position.symbol,
                "quantity": str(position.quantity),
                "entry_price": str(position.entry_price),
                "mark": str(mark) if mark is not None else None,
                "unrealized_pnl": metric_display(
                    "unrealized_pnl", float(unrealized) if unrealized is not None else None
                ),
                "realized_pnl": metric_display("realized_pnl", float(position.realized_pnl)),
                "stops": stops.get(position.symbol, []),
            }
        )
    return rows


def last_ticks(*, limit: int = LAST_TICKS) -> list[dict[str, Any]]:
    """The executor's last ticks, as its heartbeats report them."""
    return [
        {"at": at.isoformat(), "hostname": hostname, "metrics": metrics}
        for at, hostname, metrics in Heartbeat.objects.filter(component="executor")
        .order_by("-created_at", "-id")
        .values_list("created_at", "hostname", "metrics")[:limit]
    ]


def overview_context() -> dict[str, Any]:
    return {
        "risk_status": risk_status(),
        "positions": positions_with_stops(),
        "last_ticks": last_ticks(),
        "recent_fills": recent_fills(),
        "nav_curve": nav_curve_summary(),
    }


def router_health_context(window: str) -> dict[str, Any]:
    if window not in {spec.key for spec in WINDOWS}:
        window = DEFAULT_WINDOW
    summary = router_health_summary(window)
    return {
        "windows": WINDOWS,
        "window": window,
        "summary": summary,
        "overall_rows": [summary["overall"]] if summary and summary["overall"] else [],
        "performance_columns": PERFORMANCE_COLUMNS,
        "execution_columns": EXECUTION_COLUMNS,
        "recent_fills": recent_fills(),
    }


# --- Operators' controls ---------------------------------------------------------------------


def operator_kill_switch(
    *, user: AbstractBaseUser | AnonymousUser, on: bool, reason: str, via: str = "dashboard"
) -> str:
    """Switch the kill switch (dashboard or API): recorded in the limits' history and the
    admin's log, with who, how and why."""
    if not reason.strip():
        raise ValueError("a reason is required to switch the kill switch")
    limits = kill_switch_set(on=on, actor=f"{user.get_username()} ({via})", reason=reason)
    audit_log(user, limits, f"kill switch {'on' if on else 'off'} from the {via}: {reason}")
    return f"Kill switch {'on' if on else 'off'}."


def operator_unhalt(
    *, user: AbstractBaseUser | AnonymousUser, reason: str, rebase: bool, via: str
) -> RiskState:
    """Lift the account's halt (``RiskStateConflict`` when trading is not halted), audited."""
    row = risk_unhalt(actor=f"{user.get_username()} ({via})", note=reason, rebase=rebase)
    audit_log(user, row, f"un-halted from the {via}{' (rebased)' if rebase else ''}: {reason}")
    return row


def operator_flatten(
    *, user: AbstractBaseUser | AnonymousUser, reason: str, via: str = "dashboard"
) -> str:
    """Queue ``flatten`` on the executor queue (it runs under the executor's lock, between
    ticks), logged in the admin's log with who and why; returns the task id."""
    if not reason.strip():
        raise ValueError("a reason is required to flatten")
    result = flatten_task.apply_async(
        kwargs={"actor": f"{user.get_username()} ({via})", "reason": reason},
        queue="executor",
    )
    limits = RiskLimit.objects.get(symbol="")
    audit_log(user, limits, f"flatten requested from the {via}: {reason}")
    return str(result.id)
