"""What the Risk tab shows: configured vs effective limits, autotune history, recent refusals and
snapshots.

Each selector returns plain JSON-ready values (Decimals as exact plain strings without trailing
zeros, datetimes as ISO 8601 in UTC) that both the server-rendered page and the read-only API
(``risk.api``) use, so the two always show the same text for the same number. Every query is
bounded: the page opens as fast on years of history as on a fresh install.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from risk.limits import SIZE_LIMITS, Limits, limits_scaled
from risk.models import SYMBOL_LIMITS, AutotuneEvent, RiskLimit, RiskSnapshot, RiskState
from risk.selectors import (
    LimitsNotConfigured,
    _limits_from,  # same app: merges rows already read, instead of one query per symbol
    payload_checksum,
    row_checksum_ok,
)
from routing.models import Signal

AUTOTUNE_EVENTS_SHOWN = 50
AUTOTUNE_CHART_POINTS = 500
REFUSALS_SHOWN = 50
SNAPSHOTS_SHOWN = 20
# Each override adds two columns; more than this would not fit a laptop screen.
OVERRIDE_SYMBOLS_SHOWN = 8

# Label and unit of every limit, in the order of the ``Limits`` dataclass (kill switch aside:
# it is shown as an indicator, not a number).
LIMIT_LABELS: dict[str, tuple[str, str]] = {
    "max_order_notional": ("Max order notional", "USDT per order"),
    "max_position_notional": ("Max position notional", "USDT per symbol"),
    "max_gross_exposure": ("Max gross exposure", "USDT, all symbols"),
    "max_leverage": ("Max leverage", "gross exposure / NAV"),
    "max_daily_loss": ("Max daily loss", "fraction of the day's start"),
    "max_drawdown": ("Max drawdown", "fraction below the peak"),
    "max_open_orders": ("Max open orders", "orders"),
    "loss_streak_limit": ("Loss streak limit", "losing trades in a row"),
    "loss_streak_cooldown": ("Loss streak cooldown", "seconds"),
    "min_liquidation_distance": ("Min liquidation distance", "fraction (adverse move)"),
    "autotune_floor": ("Autotune floor", "lowest size multiplier"),
    "stop_distance": ("Stop distance", "fraction of the entry price"),
}
LIMIT_FIELDS = tuple(field.name for field in fields(Limits) if field.name != "kill_switch")


def decimal_text(value: Decimal) -> str:
    """The exact value as a plain string without trailing zeros ("1000", "0.1", never "1E+3").

    risk.js trims the strings of live pushes ("500.00000000") the same way.
    """
    return format(value.normalize(), "f")


def _value_text(value: Decimal | int | timedelta) -> str:
    if isinstance(value, timedelta):
        return str(int(value.total_seconds()))
    if isinstance(value, Decimal):
        return decimal_text(value)
    return str(value)


def _moment(value: datetime) -> str:
    return value.isoformat()


def _number_text(value: object) -> str:
    """An autotune input (a finite float, an int or None) as short, stable text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


# --- configured vs effective limits -------------------------------------------------------------


def limits_compared() -> dict[str, Any]:
    """Configured (global) vs effective limits, per-symbol overrides, multiplier, kill switch.

    Effective limits are what ``limits_effective`` gives with the state's size multiplier (the
    executor's pre-trade checks use exactly that); ``None`` while there is no risk state.
    Two queries: the limit rows and the state row.
    """
    rows = list(RiskLimit.objects.order_by("symbol")[: OVERRIDE_SYMBOLS_SHOWN + 2])
    state = RiskState.objects.order_by("pk").first()
    global_row = next((row for row in rows if row.symbol == ""), None)
    overrides = [row for row in rows if row.symbol != ""]
    result: dict[str, Any] = {
        "configured": False,
        "problem": "",
        "kill_switch": bool(global_row and global_row.kill_switch),
        "size_multiplier": decimal_text(state.size_multiplier) if state else None,
        "halted": state.halted if state else None,
        "halt_reason": state.halt_reason if state else "",
        "state_version": state.version if state else None,
        "state_checksum_ok": row_checksum_ok(state) if state else None,
        "state_updated_at": _moment(state.updated_at) if state else None,
        # Override columns: filled in once the global limits are known to be complete.
        "symbols": [],
        "more_symbols": False,
        "rows": [],
    }
    if global_row is None:
        result["problem"] = "No global risk limits: create them in the admin."
        return result
    try:
        configured = _limits_from(global_row, None)
        per_symbol = [
            (row, _limits_from(global_row, row)) for row in overrides[:OVERRIDE_SYMBOLS_SHOWN]
        ]
    except LimitsNotConfigured:
        result["problem"] = "The global risk limits are incomplete: set every field in the admin."
        return result

    def scaled(limits: Limits) -> Limits | None:
        return limits_scaled(limits, multiplier=state.size_multiplier) if state else None

    effective = scaled(configured)
    effective_per_symbol = [(row, scaled(limits)) for row, limits in per_symbol]
    result["configured"] = True
    result["symbols"] = [row.symbol for row, _ in per_symbol]
    result["more_symbols"] = len(overrides) > OVERRIDE_SYMBOLS_SHOWN
    for name in LIMIT_FIELDS:
        label, unit = LIMIT_LABELS.get(name, (name.replace("_", " ").capitalize(), ""))
        account_wide = name not in SYMBOL_LIMITS
        result["rows"].append(
            {
                "field": name,
                "label": label,
                "unit": unit,
                "scaled": name in SIZE_LIMITS,
                "account_wide": account_wide,
                "configured": _value_text(getattr(configured, name)),
                "effective": _value_text(getattr(effective, name)) if effective else None,
                "overrides": []
                if account_wide
                else [
                    {
                        "symbol": row.symbol,
                        # None: this symbol inherits the global value.
                        "configured": (
                            _value_text(getattr(row, name))
                            if getattr(row, name) is not None
                            else None
                        ),
                        "effective": (
                            _value_text(getattr(limits, name)) if limits is not None else None
                        ),
                    }
                    for row, limits in effective_per_symbol
                ],
            }
        )
    return result


# --- autotune -----------------------------------------------------------------------------------


def autotune_events_recent(*, limit: int = AUTOTUNE_EVENTS_SHOWN) -> list[dict[str, Any]]:
    """The newest ``limit`` autotune events, newest first."""
    events = AutotuneEvent.objects.order_by("-created_at", "-id").only(
        "id", "created_at", "old_multiplier", "new_multiplier", "reason", "inputs"
    )[:limit]
    return [
        {
            "id": event.pk,
            "at": _moment(event.created_at),
            "old_multiplier": decimal_text(event.old_multiplier),
            "new_multiplier": decimal_text(event.new_multiplier),
            "reason": event.reason,
            # By name: PostgreSQL's jsonb does not keep the keys' order.
            "inputs": [
                {"name": str(name), "value": _number_text(value)}
                for name, value in sorted(
                    event.inputs.items() if isinstance(event.inputs, dict) else ()
                )
            ],
        }
        for event in events
    ]


def autotune_multiplier_series(*, limit: int = AUTOTUNE_CHART_POINTS) -> dict[str, Any]:
    """The size multiplier over time for the chart, oldest first: ``[at, multiplier]`` for the
    newest ``limit`` events, starting from the first one's old multiplier (a step line)."""
    newest = list(
        AutotuneEvent.objects.order_by("-created_at", "-id").values_list(
            "created_at", "old_multiplier", "new_multiplier"
        )[:limit]
    )
    newest.reverse()
    points: list[list[str]] = []
    if newest:
        first_at, first_old, _ = newest[0]
        points.append([_moment(first_at), decimal_text(first_old)])
    points.extend([_moment(at), decimal_text(new)] for at, _, new in newest)
    return {"points": points}


# --- refusals and snapshots ---------------------------------------------------------------------


def refusals_recent(*, limit: int = REFUSALS_SHOWN) -> list[dict[str, Any]]:
    """The newest ``limit`` signals the pre-trade checks refused, newest first, with reasons."""
    signals = Signal.objects.filter(status=Signal.Status.REJECTED).order_by("-created_at", "-id")
    return [
        {
            "id": row["id"],
            "at": _moment(row["created_at"]),
            "source": row["source"],
            "symbol": row["symbol"],
            "side": row["side"],
            "risk_code": row["risk_code"],
            "risk_reason": row["risk_reason"],
        }
        for row in signals.values(
            "id", "created_at", "source", "symbol", "side", "risk_code", "risk_reason"
        )[:limit]
    ]


def _state_decimal(state: object, name: str) -> str | None:
    value = state.get(name) if isinstance(state, dict) else None
    try:
        return decimal_text(Decimal(str(value))) if value is not None else None
    except InvalidOperation:
        return None  # a damaged snapshot: its checksum says so


def snapshots_recent(*, limit: int = SNAPSHOTS_SHOWN) -> list[dict[str, Any]]:
    """The newest ``limit`` risk snapshots, newest first, each with whether its checksum holds
    (only a valid snapshot is ever restored)."""
    snapshots = RiskSnapshot.objects.order_by("-created_at", "-id")[:limit]
    reasons = dict(RiskSnapshot.Reason.choices)
    result = []
    for snapshot in snapshots:
        state = snapshot.state
        halted = state.get("halted") if isinstance(state, dict) else None
        try:
            checksum_ok = payload_checksum(state) == snapshot.checksum
        except (TypeError, ValueError):
            checksum_ok = False
        result.append(
            {
                "id": snapshot.pk,
                "at": _moment(snapshot.created_at),
                "reason": snapshot.reason,
                "reason_label": reasons.get(snapshot.reason, snapshot.reason),
                "state_version": snapshot.state_version,
                "nav": _state_decimal(state, "nav"),
                "size_multiplier": _state_decimal(state, "size_multiplier"),
                "halted": halted if isinstance(halted, bool) else None,
                "checksum": snapshot.checksum,
                "checksum_ok": checksum_ok,
                "actor": snapshot.actor,
                "note": snapshot.note,
            }
        )
    return result


# --- the page -----------------------------------------------------------------------------------


def risk_tab_context() -> dict[str, Any]:
    """Everything ``dashboard/risk.html`` renders (six bounded queries)."""
    return {
        "risk_limits": limits_compared(),
        "risk_autotune_events": autotune_events_recent(),
        "risk_autotune_series": autotune_multiplier_series(),
        "risk_refusals": refusals_recent(),
        "risk_snapshots": snapshots_recent(),
        "risk_shown": {
            "autotune_events": AUTOTUNE_EVENTS_SHOWN,
            "refusals": REFUSALS_SHOWN,
            "snapshots": SNAPSHOTS_SHOWN,
        },
    }
