"""The doctor's documents in the Firestore mirror: incidents and the latest doctor snapshot.

Each ``*_document`` function is the one definition of a mirrored document: the services enqueue
it inside the transaction of the change and ``fs_doctor`` compares Firestore against it.
"""

from __future__ import annotations

from typing import Any

from doctor.models import DoctorSnapshot, Incident
from tradingsite.outbox import enqueue
from tradingsite.replaydb import replay_active

INCIDENTS = "incidents"
DOCTOR = "doctor"
DOCTOR_LATEST = "latest"


def incident_document(incident: Incident) -> dict[str, Any]:
    return {
        "component": incident.component,
        "code": incident.code,
        "severity": incident.severity,
        "message": incident.message,
        "occurrences": incident.occurrences,
        "opened_at": incident.opened_at,
        "last_seen_at": incident.last_seen_at,
        "resolved_at": incident.resolved_at,
    }


def incident_mirror(incident: Incident) -> None:
    if replay_active() is not None:  # a replay's incidents stay in its own database
        return
    enqueue(INCIDENTS, str(incident.pk), incident_document(incident))


def snapshot_document(snapshot: DoctorSnapshot) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.pk,
        "taken_at": snapshot.taken_at,
        "status": snapshot.status,
        "confidence": snapshot.confidence,
        "checks": snapshot.checks,
    }


def snapshot_mirror(snapshot: DoctorSnapshot) -> None:
    enqueue(DOCTOR, DOCTOR_LATEST, snapshot_document(snapshot))
