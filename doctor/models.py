"""Heartbeats and incidents: the health records every process writes and the doctor reads."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Heartbeat(models.Model):
    """One sign of life from a component (executor, worker, ml, beat, ...) with its metrics."""

    component = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["component", "-created_at"], name="heartbeat_component_time")
        ]

    def __str__(self) -> str:
        return f"{self.component}@{self.hostname} {self.created_at:%Y-%m-%d %H:%M:%S}"


class Incident(models.Model):
    """Something went wrong and a person may need to know; at most one open per component+code."""

    class Severity(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    component = models.CharField(max_length=64)
    code = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    message = models.TextField()
    context = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["component", "code"],
                condition=Q(resolved_at__isnull=True),
                name="incident_one_open_per_component_code",
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True) | Q(resolved_at__gte=models.F("opened_at")),
                name="incident_resolved_after_opened",
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "-opened_at"], name="incident_open_recent")]

    def __str__(self) -> str:
        state = "open" if self.resolved_at is None else "resolved"
        return f"[{self.severity}] {self.component}/{self.code} ({state})"
