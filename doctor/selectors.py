"""Reading heartbeats."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from doctor.models import Heartbeat


def heartbeats_latest() -> QuerySet[Heartbeat]:
    """The newest heartbeat of every component (one row each, newest first)."""
    newest = Heartbeat.objects.filter(component=OuterRef("component")).order_by(
        "-created_at", "-id"
    )
    return Heartbeat.objects.filter(pk=Subquery(newest.values("pk")[:1])).order_by(
        "-created_at", "-id"
    )
