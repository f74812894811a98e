"""Doctor snapshots: run every check, store the result, mirror and push it, raise incidents.

``doctor_report`` runs the checks and returns them (the ``doctor`` command: read-only, safe on
production). ``snapshot_take`` also stores a ``DoctorSnapshot`` (the confidence time series),
mirrors it to Firestore, pushes it to open pages and turns failing checks into incidents —
component ``doctor``, code ``check-<name>`` — so a check turning red alerts once, and its
recovery once (through the incidents' alerts).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from doctor.checks import CHECKS, FAIL, OK, Check, CheckResult, checks_run, confidence_overall
from doctor.checks import status_overall as _status_overall
from doctor.mirror import snapshot_mirror
from doctor.models import DoctorSnapshot, Incident
from doctor.services import incident_open, incident_resolve
from tradingsite.live import live_push
from tradingsite.locks import single_flight

logger = logging.getLogger(__name__)

COMPONENT = "doctor"
SNAPSHOT_RETENTION = timedelta(days=30)
WARN_HOLD = timedelta(minutes=15)
HISTORY_HOURS_DEFAULT = 24
HISTORY_HOURS_MAX = 24 * 30
HISTORY_POINTS_MAX = 1500


@dataclass(frozen=True)
class DoctorReport:
    taken_at: datetime
    status: str
    confidence: float
    duration_ms: float
    results: list[CheckResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "status": self.status,
            "confidence": self.confidence,
            "duration_ms": self.duration_ms,
            "checks": [result.as_dict() for result in self.results],
        }


def doctor_report(
    *, now: datetime | None = None, checks: tuple[Check, ...] | None = None
) -> DoctorReport:
    """Run the checks now; nothing is written."""
    taken_at = now or timezone.now()
    started = time.perf_counter()
    results = checks_run(now=taken_at, checks=CHECKS if checks is None else checks)
    return DoctorReport(
        taken_at=taken_at,
        status=_status_overall(results),
        confidence=confidence_overall(results),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        results=results,
    )


def incident_code(check_name: str) -> str:
    return f"check-{check_name}"


def snapshot_store(report: DoctorReport, *, trigger: DoctorSnapshot.Trigger) -> DoctorSnapshot:
    """Store ``report`` (mirrored and pushed with the same commit) and sync the incidents."""
    with transaction.atomic():
        snapshot = DoctorSnapshot.objects.create(
            taken_at=report.taken_at,
            status=report.status,
            confidence=report.confidence,
            checks=[result.as_dict() for result in report.results],
            duration_ms=report.duration_ms,
            trigger=trigger,
        )
        snapshot_mirror(snapshot)
        live_push(event="doctor.snapshot", data=snapshot_as_dict(snapshot))
    for result in report.results:
        if not result.opens_incident:
            continue
        if result.status == FAIL:
            incident_open(
                component=COMPONENT,
                code=incident_code(result.name),
                severity=Incident.Severity.CRITICAL,
                message=f"{result.label}: {result.detail}",
                context={"check": result.name, "snapshot": snapshot.pk},
                at=report.taken_at,
            )
        elif result.status == OK or _failure_long_gone(result, report.taken_at):
            # Resolved once fully ok (a check hovering between warn and fail keeps one incident,
            # one alert, instead of one every minute), or after WARN_HOLD of warnings only.
            incident_resolve(
                component=COMPONENT, code=incident_code(result.name), at=report.taken_at
            )
    _orphans_resolve(report, at=report.taken_at)
    return snapshot


def _failure_long_gone(result: CheckResult, at: datetime) -> bool:
    """A check that went from fail to warn and stayed there: its incident's last failure is
    older than WARN_HOLD (``incident_open`` bumps ``last_seen_at`` on every failure)."""
    return Incident.objects.filter(
        component=COMPONENT,
        code=incident_code(result.name),
        resolved_at__isnull=True,
        last_seen_at__lt=at - WARN_HOLD,
    ).exists()


def _orphans_resolve(report: DoctorReport, *, at: datetime) -> None:
    """Doctor incidents no check can resolve any more (a check renamed, removed or no longer
    opening incidents) are resolved, so none stays open for ever."""
    live = {incident_code(check.name) for check in CHECKS if check.opens_incident} | {
        incident_code(result.name) for result in report.results if result.opens_incident
    }
    orphans = (
        Incident.objects.filter(component=COMPONENT, resolved_at__isnull=True)
        .exclude(code__in=live)
        .values_list("code", flat=True)
    )
    for code in list(orphans):
        incident_resolve(component=COMPONENT, code=code, at=at)


def snapshot_take(
    *, trigger: DoctorSnapshot.Trigger, now: datetime | None = None
) -> DoctorSnapshot:
    return snapshot_store(doctor_report(now=now), trigger=trigger)


def snapshot_take_scheduled() -> DoctorSnapshot | None:
    """The periodic run (``cron_doctor_cache``): one at a time; old snapshots pruned."""
    with single_flight("doctor-snapshot", ttl_seconds=120) as run:
        if not run.acquired:
            logger.info("doctor snapshot skipped: one is already running")
            return None
        snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.SCHEDULE)
        snapshots_prune()
        return snapshot


def snapshots_prune(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - SNAPSHOT_RETENTION
    deleted, _ = DoctorSnapshot.objects.filter(taken_at__lt=cutoff).delete()
    return deleted


# --- reading --------------------------------------------------------------------------------


def snapshot_as_dict(snapshot: DoctorSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.pk,
        "taken_at": snapshot.taken_at.isoformat(),
        "status": snapshot.status,
        "confidence": snapshot.confidence,
        "duration_ms": snapshot.duration_ms,
        "trigger": snapshot.trigger,
        "checks": snapshot.checks,
    }


def snapshot_latest() -> DoctorSnapshot | None:
    return DoctorSnapshot.objects.order_by("-taken_at", "-id").first()


def confidence_series(
    *, hours: int = HISTORY_HOURS_DEFAULT, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The doctor confidence over the last ``hours`` (oldest first), thinned to at most
    ``HISTORY_POINTS_MAX`` points by keeping every n-th one (the newest always kept)."""
    if not 1 <= hours <= HISTORY_HOURS_MAX:
        raise ValueError(f"hours must be between 1 and {HISTORY_HOURS_MAX}")
    since = (now or timezone.now()) - timedelta(hours=hours)
    rows = list(
        DoctorSnapshot.objects.filter(taken_at__gte=since)
        .order_by("taken_at", "id")
        .values_list("taken_at", "confidence", "status")
    )
    step = max(1, -(-len(rows) // HISTORY_POINTS_MAX))
    kept = rows[::-1][::step][::-1]
    return [
        {"at": at.isoformat(), "confidence": confidence, "status": status}
        for at, confidence, status in kept
    ]
