"""What the Doctor tab shows: the latest cached snapshot, the confidence history, the open
incidents and recent alerts. The page, its script and ``doctor.api`` read the same dicts."""

from __future__ import annotations

from typing import Any, Final

from django.utils import timezone

from doctor.models import Alert, Incident
from doctor.snapshots import confidence_series, snapshot_as_dict, snapshot_latest

INCIDENTS_SHOWN: Final = 50
ALERTS_SHOWN: Final = 20
EMPTY_HINT: Final = (
    "No doctor snapshot yet: the 'doctor: snapshot' schedule caches one every minute once the "
    "worker and beat run (make run), or run: python manage.py cron_doctor_cache"
)


def doctor_latest() -> dict[str, Any] | None:
    snapshot = snapshot_latest()
    if snapshot is None:
        return None
    data = snapshot_as_dict(snapshot)
    data["age_seconds"] = round((timezone.now() - snapshot.taken_at).total_seconds(), 1)
    return data


def incidents_open() -> list[dict[str, Any]]:
    return [
        {
            "id": incident.pk,
            "component": incident.component,
            "code": incident.code,
            "severity": incident.severity,
            "message": incident.message,
            "occurrences": incident.occurrences,
            "opened_at": incident.opened_at.isoformat(),
        }
        for incident in Incident.objects.filter(resolved_at__isnull=True).order_by(
            "-opened_at", "-id"
        )[:INCIDENTS_SHOWN]
    ]


def alerts_recent() -> list[dict[str, Any]]:
    return [
        {
            "id": alert.pk,
            "incident": f"{alert.incident.component}/{alert.incident.code}",
            "event": alert.event,
            "channel": alert.channel,
            "status": alert.status,
            "attempts": alert.attempts,
            "created_at": alert.created_at.isoformat(),
            "last_error": alert.last_error,
        }
        for alert in Alert.objects.select_related("incident").order_by("-created_at", "-id")[
            :ALERTS_SHOWN
        ]
    ]


def doctor_context() -> dict[str, Any]:
    return {
        "latest": doctor_latest(),
        "confidence": confidence_series(hours=24),
        "incidents": incidents_open(),
        "alerts": alerts_recent(),
        "empty_hint": EMPTY_HINT,
    }
