"""Changing the risk state: every write goes through ``_state_change``.

The database row is the truth. A change locks the row (``select_for_update``; SQLite has no
row locks but its IMMEDIATE transactions serialise writers) and writes only if ``version`` is
still the one it read, retrying otherwise, so two processes can never lose each other's
update: a halt set while a NAV update is in flight survives it. Every change also writes the
Firestore outbox row and a live push in the same transaction, and a snapshot when the state
crossed a line (halt, cooldown, day roll, multiplier) or a person acted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy.typing as npt
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from doctor.models import Incident
from doctor.services import incident_open, incident_resolve
from risk.autotune import AutotuneConfig, autotune_step
from risk.limits import limits_as_dict, limits_scaled
from risk.models import (
    ACCOUNT_LIMITS,
    SYMBOL_LIMITS,
    AutotuneEvent,
    RiskLimit,
    RiskSnapshot,
    RiskState,
)
from risk.selectors import (
    STATE_FIELDS,
    limits_configured,
    limits_effective,
    payload_checksum,
    row_checksum_ok,
    state_payload,
    values_from_payload,
    values_from_row,
)
from risk.state import (
    StateValues,
    Transition,
    nav_observed,
    state_halted,
    state_initial,
    state_unhalted,
    trade_closed,
)
from tradingsite.decimals import quantize
from tradingsite.live import live_push
from tradingsite.mirrors import risk_state_mirror

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20

Change = Callable[[StateValues], tuple[StateValues, list[Transition]]]


class RiskStateConflict(RuntimeError):
    """The state is not in a condition the request needs (e.g. un-halting a trading account)."""


class RiskStateUnavailable(RuntimeError):
    """No usable state: the row is missing or corrupt and no valid snapshot exists."""


# --- loading and restoring ---------------------------------------------------------------------


def risk_state_load(*, initial_nav: Decimal | None = None, at: datetime | None = None) -> RiskState:
    """The verified state row; restored from the newest valid snapshot when it is missing or
    fails its checksum; created from ``initial_nav`` only when there is neither."""
    try:
        with transaction.atomic():
            return _load_or_restore(initial_nav=initial_nav, at=at)
    except RiskStateUnavailable as error:
        # Recorded after the failed transaction rolled back, so the incident is kept.
        incident_open(
            component="risk",
            code="state_unavailable",
            severity=Incident.Severity.CRITICAL,
            message=str(error),
        )
        raise


def _load_or_restore(*, initial_nav: Decimal | None, at: datetime | None) -> RiskState:
    row = RiskState.objects.select_for_update().first()
    if row is not None and row_checksum_ok(row):
        return row
    problem = "missing" if row is None else "failed its checksum"
    snapshot = _newest_valid_snapshot()
    if snapshot is not None:
        logger.warning("risk state %s: restoring snapshot #%s", problem, snapshot.pk)
        incident_open(
            component="risk",
            code="state_restored",
            severity=Incident.Severity.WARNING,
            message=f"risk state {problem}; restored snapshot #{snapshot.pk}",
        )
        return _write_restored(row, snapshot, actor="system", note=f"state {problem}")
    if row is not None or initial_nav is None:
        raise RiskStateUnavailable(f"risk state {problem} and no valid snapshot to restore")
    values = state_initial(nav=quantize(initial_nav), at=at or timezone.now())
    row = RiskState(version=0, checksum="", **_columns(values))
    row.effective_limits = limits_as_dict(limits_effective(multiplier=values.size_multiplier))
    row.save()
    _seal(row)
    _after_change(row, reason=RiskSnapshot.Reason.CHANGE, note="state created")
    return row


def _newest_valid_snapshot() -> RiskSnapshot | None:
    for snapshot in RiskSnapshot.objects.order_by("-created_at", "-id").iterator(chunk_size=50):
        if payload_checksum(snapshot.state) == snapshot.checksum:
            return snapshot
        # A damaged snapshot is never used; it is reported once per load.
        incident_open(
            component="risk",
            code="snapshot_corrupt",
            severity=Incident.Severity.WARNING,
            message=f"risk snapshot #{snapshot.pk} failed its checksum and was skipped",
        )
    return None


def risk_snapshot_restore(*, snapshot_id: int | None = None, actor: str, note: str) -> RiskState:
    """An operator restores a snapshot (the newest valid one by default)."""
    if not note.strip():
        raise ValueError("a reason is required to restore a snapshot")
    with transaction.atomic():
        if snapshot_id is None:
            snapshot = _newest_valid_snapshot()
            if snapshot is None:
                raise RiskStateUnavailable("no valid snapshot to restore")
        else:
            snapshot = RiskSnapshot.objects.get(pk=snapshot_id)
            if payload_checksum(snapshot.state) != snapshot.checksum:
                raise RiskStateUnavailable(f"snapshot #{snapshot_id} failed its checksum")
        row = RiskState.objects.select_for_update().first()
        return _write_restored(row, snapshot, actor=actor, note=note)


def _write_restored(
    row: RiskState | None, snapshot: RiskSnapshot, *, actor: str, note: str
) -> RiskState:
    values = values_from_payload(snapshot.state)
    version = (row.version if row is not None else int(snapshot.state["version"])) + 1
    if row is None:
        row = RiskState(checksum="", version=version, **_columns(values))
    else:
        row.version = version
        for name, value in _columns(values).items():
            setattr(row, name, value)
    row.effective_limits = limits_as_dict(limits_effective(multiplier=values.size_multiplier))
    row.save()
    _seal(row)
    _after_change(
        row, reason=RiskSnapshot.Reason.RESTORE, actor=actor, note=f"{note} (from #{snapshot.pk})"
    )
    _halt_incident_sync(row)
    return row


# --- the one way to change the state --------------------------------------------------------


def _columns(values: StateValues) -> dict[str, Any]:
    return {name: getattr(values, name) for name in STATE_FIELDS}


def _seal(row: RiskState) -> None:
    """Store the checksum of the row as the database holds it (after its own rounding)."""
    row.refresh_from_db()
    row.checksum = payload_checksum(state_payload(values_from_row(row), version=row.version))
    RiskState.objects.filter(pk=row.pk).update(checksum=row.checksum)


def _state_change(
    change: Change,
    *,
    snapshot_reason: RiskSnapshot.Reason | None = None,
    actor: str = "",
    note: str = "",
) -> tuple[RiskState, list[Transition]]:
    for _ in range(MAX_ATTEMPTS):
        # Verify (or restore) first, in its own transaction, so a restore is kept even if
        # this change fails.
        loaded = risk_state_load()
        with transaction.atomic():
            row = RiskState.objects.select_for_update().get(pk=loaded.pk)
            if not row_checksum_ok(row):
                continue  # damaged since it was verified: load (and restore) again
            before = values_from_row(row)
            after, transitions = change(before)
            if after == before and snapshot_reason is None:
                return row, transitions
            columns = _columns(after)
            effective = limits_as_dict(limits_effective(multiplier=after.size_multiplier))
            written = RiskState.objects.filter(pk=row.pk, version=row.version).update(
                **columns, effective_limits=effective, version=F("version") + 1
            )
            if written == 1:
                _seal(row)
                reason = snapshot_reason or (RiskSnapshot.Reason.CHANGE if transitions else None)
                _after_change(row, reason=reason, actor=actor, note=note or ", ".join(transitions))
                if Transition.HALTED in transitions:
                    _halt_incident_open(row)
                if Transition.UNHALTED in transitions:
                    incident_resolve(component="risk", code="halted")
                return row, transitions
        # Someone else wrote between our read and our write: read again and re-apply.
    raise RuntimeError("risk state kept changing under this update; giving up")


def _halt_incident_open(row: RiskState) -> None:
    incident_open(
        component="risk",
        code="halted",
        severity=Incident.Severity.CRITICAL,
        message=f"trading halted: {row.halt_reason}",
    )


def _halt_incident_sync(row: RiskState) -> None:
    """After a restore: the ``risk/halted`` incident is open exactly while trading is halted
    (a snapshot can halt or un-halt it), and an incident already open is not counted again."""
    if not row.halted:
        incident_resolve(component="risk", code="halted")
    elif not Incident.objects.filter(
        component="risk", code="halted", resolved_at__isnull=True
    ).exists():
        _halt_incident_open(row)


def _after_change(
    row: RiskState, *, reason: RiskSnapshot.Reason | None, actor: str = "", note: str = ""
) -> None:
    payload = state_payload(values_from_row(row), version=row.version)
    if reason is not None:
        RiskSnapshot.objects.create(
            state=payload,
            checksum=payload_checksum(payload),
            state_version=row.version,
            reason=reason,
            actor=actor,
            note=note,
        )
    risk_state_mirror(row)
    live_push(event="risk.state", data={**payload, "effective_limits": row.effective_limits})


# --- services the executor, the admin, the API and commands call ---------------------------


def risk_nav_observe(
    *, nav: Decimal, cash_flow: Decimal = Decimal(0), at: datetime | None = None
) -> RiskState:
    """Fold a NAV observation (and the net cash flow since the last one) into the state."""
    moment = at or timezone.now()
    limits = limits_configured()
    row, _ = _state_change(
        lambda values: nav_observed(
            values, nav=quantize(nav), cash_flow=quantize(cash_flow), at=moment, limits=limits
        )
    )
    return row


def risk_trade_closed(*, pnl: Decimal, at: datetime | None = None) -> RiskState:
    moment = at or timezone.now()
    limits = limits_configured()
    row, _ = _state_change(
        lambda values: trade_closed(values, pnl=quantize(pnl), at=moment, limits=limits)
    )
    return row


def risk_halt(*, reason: str, actor: str, at: datetime | None = None) -> RiskState:
    if not reason.strip():
        raise ValueError("a reason is required to halt")
    moment = at or timezone.now()

    def change(values: StateValues) -> tuple[StateValues, list[Transition]]:
        halted = state_halted(values, reason=reason, at=moment)
        return halted, [Transition.HALTED] if halted != values else []

    row, _ = _state_change(
        change, snapshot_reason=RiskSnapshot.Reason.MANUAL, actor=actor, note=reason
    )
    return row


def risk_unhalt(
    *, actor: str, note: str, rebase: bool = False, at: datetime | None = None
) -> RiskState:
    """A person lifts the halt (with a reason); ``rebase`` accepts the loss that caused it."""
    if not note.strip():
        raise ValueError("a reason is required to un-halt")
    moment = at or timezone.now()

    def change(values: StateValues) -> tuple[StateValues, list[Transition]]:
        if not values.halted:
            raise RiskStateConflict("trading is not halted")
        return state_unhalted(values, rebase=rebase, at=moment), [Transition.UNHALTED]

    row, _ = _state_change(
        change, snapshot_reason=RiskSnapshot.Reason.MANUAL, actor=actor, note=note
    )
    return row


def risk_multiplier_set(*, multiplier: Decimal) -> RiskState:
    """Apply the autotuner's size multiplier (the autotune step records its event)."""

    def change(values: StateValues) -> tuple[StateValues, list[Transition]]:
        if values.size_multiplier == multiplier:
            return values, []
        return replace(values, size_multiplier=multiplier), [Transition.MULTIPLIER_CHANGED]

    row, _ = _state_change(change)
    return row


def risk_autotune(
    *, returns: npt.ArrayLike, config: AutotuneConfig | None = None
) -> AutotuneEvent | None:
    """The executor tick's autotune step: recompute the size multiplier from the account's
    recent returns and drawdown; when it changes, apply it and record an AutotuneEvent."""
    values = values_from_row(risk_state_load())
    configured = limits_configured()
    result = autotune_step(
        returns=returns,
        drawdown=values.drawdown,
        previous=values.size_multiplier,
        floor=configured.autotune_floor,
        config=config or AutotuneConfig(),
    )
    if not result.changed:
        return None
    with transaction.atomic():
        risk_multiplier_set(multiplier=result.multiplier)
        event = AutotuneEvent.objects.create(
            inputs=result.inputs,
            old_multiplier=values.size_multiplier,
            new_multiplier=result.multiplier,
            old_limits=limits_as_dict(limits_scaled(configured, multiplier=values.size_multiplier)),
            new_limits=limits_as_dict(limits_scaled(configured, multiplier=result.multiplier)),
            reason=result.reason,
        )
        live_push(
            event="risk.autotune",
            data={
                "old": str(event.old_multiplier),
                "new": str(event.new_multiplier),
                "reason": event.reason,
            },
        )
    return event


LIMIT_FIELDS = (*ACCOUNT_LIMITS, *SYMBOL_LIMITS)


def limits_write(
    *, symbol: str, changes: dict[str, Any], actor: str, reason: str
) -> tuple[RiskLimit, bool]:
    """Change the global limits (``symbol=""``) or a symbol's overrides (created when it has
    none); validated as the admin validates them, recorded in the limits' history with who and
    why. Raises Django's ``ValidationError`` (field messages) and changes nothing when the
    result is not valid; the kill switch is not a limit (``kill_switch_set``).
    Returns the row and whether it was created."""
    if not reason.strip():
        raise ValidationError({"reason": "Say why the limits change."})
    unknown = sorted(set(changes) - set(LIMIT_FIELDS))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "Not a limit that can be written."))
    with transaction.atomic():
        row = RiskLimit.objects.select_for_update().filter(symbol=symbol).first()
        created = row is None
        if row is None:
            if not symbol:
                raise ValidationError({"symbol": "The global limits row is missing."})
            row = RiskLimit(symbol=symbol)
        for name, value in changes.items():
            setattr(row, name, value)
        row.full_clean()
        row._change_reason = f"{actor}: {reason}"  # type: ignore[attr-defined]
        row.save()
    return row, created


def kill_switch_set(*, on: bool, actor: str, reason: str) -> RiskLimit:
    """Switch the global kill switch, recorded in the limits' history with who and why."""
    if not reason.strip():
        raise ValueError("a reason is required to switch the kill switch")
    with transaction.atomic():
        limits = RiskLimit.objects.select_for_update().get(symbol="")
        if limits.kill_switch != on:
            limits.kill_switch = on
            limits._change_reason = f"{actor}: {reason}"  # type: ignore[attr-defined]
            limits.save()
            live_push(event="risk.kill_switch", data={"on": on, "actor": actor, "reason": reason})
            # An incident, so it alerts (once when switched on, once when off) and the doctor
            # lists it while it is on.
            if on:
                incident_open(
                    component="risk",
                    code="kill_switch",
                    severity=Incident.Severity.WARNING,
                    message=f"kill switch switched on by {actor}: {reason}",
                    context={"actor": actor, "reason": reason},
                )
            else:
                incident_resolve(component="risk", code="kill_switch")
        return limits


def risk_snapshot_write(
    *, reason: RiskSnapshot.Reason = RiskSnapshot.Reason.MANUAL, actor: str = "", note: str = ""
) -> RiskSnapshot:
    with transaction.atomic():
        row = risk_state_load()
        payload = state_payload(values_from_row(row), version=row.version)
        return RiskSnapshot.objects.create(
            state=payload,
            checksum=payload_checksum(payload),
            state_version=row.version,
            reason=reason,
            actor=actor,
            note=note,
        )


def risk_snapshot_if_due(*, every: timedelta, at: datetime | None = None) -> RiskSnapshot | None:
    """The periodic snapshot: written when the newest one is older than ``every``."""
    moment = at or timezone.now()
    newest = (
        RiskSnapshot.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    )
    if newest is not None and moment - newest < every:
        return None
    return risk_snapshot_write(reason=RiskSnapshot.Reason.PERIODIC)
