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


class DoctorSnapshot(models.Model):
    """The result of one doctor run: every check and the overall confidence, as taken then."""

    class Status(models.TextChoices):
        OK = "ok", "ok"
        WARN = "warn", "warn"
        FAIL = "fail", "fail"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        COMMAND = "command", "command"
        API = "api", "api"
        ADMIN = "admin", "admin"

    taken_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices)
    confidence = models.FloatField(help_text="Overall doctor confidence in [0, 1].")
    checks = models.JSONField(
        default=list,
        help_text="One object per check: name, status, detail, latency_ms, confidence.",
    )
    duration_ms = models.FloatField(default=0)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)

    class Meta:
        ordering = ["-taken_at", "-id"]
        get_latest_by = ["taken_at", "id"]
        indexes = [models.Index(fields=["-taken_at"], name="doctor_snapshot_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                name="doctor_snapshot_confidence_unit",
            ),
        ]

    def __str__(self) -> str:
        return f"doctor {self.status} {self.confidence:.2f} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class Alert(models.Model):
    """One message about an incident (its opening or its recovery) to one channel."""

    class Event(models.TextChoices):
        OPENED = "opened", "opened"
        RECOVERED = "recovered", "recovered"

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "webhook"
        SLACK = "slack", "Slack"
        TELEGRAM = "telegram", "Telegram"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="alerts")
    event = models.CharField(max_length=16, choices=Event.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    text = models.TextField()
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a pending alert's task is due; one long overdue is sent again.",
    )
    dispatch = models.PositiveIntegerField(
        default=0,
        help_text="Which queued task chain owns the alert; a re-queue (sweep, resend) "
        "starts a new one and older chains stop.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "event", "channel"], name="alert_one_per_incident_event_channel"
            ),
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="alert_status_recent")]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} alert for {self.incident_id} ({self.status})"
