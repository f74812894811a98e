"""Alerts: one message per incident opening and one per recovery, to every configured channel."""

from __future__ import annotations

from doctor.models import Alert, Incident


def alerts_queue(incident: Incident, event: Alert.Event) -> list[Alert]:
    """Inside the incident's transaction: record one pending alert per configured channel."""
    return []
