"""Writing heartbeats and incidents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from doctor.alerts import alerts_queue
from doctor.mirror import incident_mirror
from doctor.models import Alert, Heartbeat, Incident
from tradingsite.live import live_push
from tradingsite.replaydb import replay_active

HEARTBEAT_RETENTION = timedelta(days=3)


def heartbeat_record(
    *,
    component: str,
    hostname: str = "",
    metrics: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Heartbeat:
    """Store a heartbeat and push it to open dashboards once it is committed."""
    with transaction.atomic():
        heartbeat = Heartbeat.objects.create(
            component=component,
            hostname=hostname,
            created_at=at or timezone.now(),
            metrics=metrics or {},
        )
        live_push(event="doctor.heartbeat", data=heartbeat_as_dict(heartbeat))
    return heartbeat


def heartbeat_as_dict(heartbeat: Heartbeat) -> dict[str, Any]:
    return {
        "component": heartbeat.component,
        "hostname": heartbeat.hostname,
        "at": heartbeat.created_at.isoformat(),
        "metrics": heartbeat.metrics,
    }


def heartbeats_prune(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - HEARTBEAT_RETENTION
    deleted, _ = Heartbeat.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def incident_open(
    *,
    component: str,
    code: str,
    severity: Incident.Severity,
    message: str,
    context: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Incident:
    """Open an incident, or count another occurrence of the one already open for component+code."""
    now = at or timezone.now()
    for _ in range(2):
        try:
            with transaction.atomic():
                # The row lock serialises two processes reporting the same problem; the partial
                # unique constraint catches the case where both found nothing to lock.
                current = (
                    Incident.objects.select_for_update()
                    .filter(component=component, code=code, resolved_at__isnull=True)
                    .first()
                )
                if current is None:
                    incident = Incident.objects.create(
                        component=component,
                        code=code,
                        severity=severity,
                        message=message,
                        context=context or {},
                        opened_at=now,
                        last_seen_at=now,
                    )
                    _incident_changed(incident, Alert.Event.OPENED)
                    return incident
                current.occurrences += 1
                current.last_seen_at = now
                current.message = message
                current.context = context or current.context
                current.save(update_fields=["occurrences", "last_seen_at", "message", "context"])
                incident_mirror(current)
                return current
        except IntegrityError:
            continue
    raise RuntimeError(f"could not open incident {component}/{code}")


def incident_resolve(*, component: str, code: str, at: datetime | None = None) -> int:
    """Resolve the open incident for component+code; return how many were resolved (0 or 1)."""
    with transaction.atomic():
        current = (
            Incident.objects.select_for_update()
            .filter(component=component, code=code, resolved_at__isnull=True)
            .first()
        )
        if current is None:
            return 0
        current.resolved_at = max(at or timezone.now(), current.opened_at)
        current.save(update_fields=["resolved_at"])
        _incident_changed(current, Alert.Event.RECOVERED)
    return 1


def _incident_changed(incident: Incident, event: Alert.Event) -> None:
    """Inside the change's transaction: mirror the incident and queue its alerts (one per
    channel for its opening, one for its recovery; more occurrences alert no one again).
    A replay's incidents (``tradingsite.replaydb``) stay in its own database: no mirror, no
    alert."""
    if replay_active() is not None:
        return
    incident_mirror(incident)
    alerts_queue(incident, event)
