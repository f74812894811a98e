"""Reading risk limits and state."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from risk.limits import Limits, limits_scaled
from risk.models import ACCOUNT_LIMITS, SYMBOL_LIMITS, RiskLimit, RiskState
from risk.state import StateValues

STATE_FIELDS = (
    "nav",
    "index",
    "peak_index",
    "day",
    "day_start_nav",
    "day_start_index",
    "day_cash_flows",
    "loss_streak",
    "cooldown_until",
    "halted",
    "halt_reason",
    "halted_at",
    "size_multiplier",
)


class LimitsNotConfigured(LookupError):
    pass


def _limits_from(row: RiskLimit, override: RiskLimit | None) -> Limits:
    merged: dict[str, Any] = {
        name: getattr(row, name) for name in (*ACCOUNT_LIMITS, *SYMBOL_LIMITS)
    }
    if override is not None:
        for name in SYMBOL_LIMITS:
            value = getattr(override, name)
            if value is not None:
                merged[name] = value
    if any(value is None for value in merged.values()):
        raise LimitsNotConfigured("the global risk limits are incomplete: set every field")
    cooldown = timedelta(seconds=merged.pop("loss_streak_cooldown_seconds"))
    return Limits(**merged, loss_streak_cooldown=cooldown, kill_switch=row.kill_switch)


def limits_configured(*, symbol: str = "") -> Limits:
    """The configured limits for ``symbol``: the global row with that symbol's overrides."""
    rows = {row.symbol: row for row in RiskLimit.objects.filter(symbol__in={"", symbol})}
    if "" not in rows:
        raise LimitsNotConfigured("no global risk limits: create them in the admin")
    return _limits_from(rows[""], rows.get(symbol) if symbol else None)


def limits_effective(*, symbol: str = "", multiplier: Decimal) -> Limits:
    """The limits in force: configured limits with size limits scaled by the autotuner."""
    return limits_scaled(limits_configured(symbol=symbol), multiplier=multiplier)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def state_payload(values: StateValues, *, version: int) -> dict[str, Any]:
    """The state as canonical JSON values (Decimals as exact strings): checksums, snapshots,
    the Firestore mirror and live pushes all use this one form."""
    payload = {name: _json_value(getattr(values, name)) for name in STATE_FIELDS}
    payload["version"] = version
    return payload


def payload_checksum(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def values_from_payload(payload: dict[str, Any]) -> StateValues:
    def moment(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return StateValues(
        nav=Decimal(payload["nav"]),
        index=Decimal(payload["index"]),
        peak_index=Decimal(payload["peak_index"]),
        day=date.fromisoformat(payload["day"]),
        day_start_nav=Decimal(payload["day_start_nav"]),
        day_start_index=Decimal(payload["day_start_index"]),
        day_cash_flows=Decimal(payload["day_cash_flows"]),
        loss_streak=int(payload["loss_streak"]),
        cooldown_until=moment(payload["cooldown_until"]),
        halted=bool(payload["halted"]),
        halt_reason=str(payload["halt_reason"]),
        halted_at=moment(payload["halted_at"]),
        size_multiplier=Decimal(payload["size_multiplier"]),
    )


def values_from_row(row: RiskState) -> StateValues:
    return StateValues(**{name: getattr(row, name) for name in STATE_FIELDS})


def row_checksum_ok(row: RiskState) -> bool:
    return (
        payload_checksum(state_payload(values_from_row(row), version=row.version)) == row.checksum
    )
