from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from doctor.alerts import alerts_resend
from doctor.models import Alert, DoctorSnapshot, Heartbeat, Incident
from tradingsite.accounts import audit_log
from tradingsite.admin_actions import OperatorAdminMixin, ReadOnlyAdmin, confirmed_action


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin[Heartbeat]):
    list_display = ["component", "hostname", "created_at"]
    list_filter = ["component"]
    date_hierarchy = "created_at"
    readonly_fields = ["component", "hostname", "created_at", "metrics"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin[Incident]):
    list_display = ["component", "code", "severity", "occurrences", "opened_at", "resolved_at"]
    list_filter = ["severity", "component", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["component", "code", "message"]
    readonly_fields = ["opened_at", "last_seen_at", "occurrences"]


@admin.action(description="Send the selected failed alerts again", permissions=["operate"])
def resend(modeladmin: AlertAdmin, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
    selected = list(queryset.values_list("pk", flat=True))
    queued = alerts_resend(alert_ids=selected)
    skipped = len(selected) - queued
    note = f" ({skipped} not failed, left alone)" if skipped else ""
    modeladmin.message_user(request, f"{queued} alert(s) queued again{note}.", messages.SUCCESS)


@admin.register(Alert)
class AlertAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    """Written only by the alerting code; operators can resend the ones that failed."""

    list_display = [
        "created_at",
        "channel",
        "event",
        "status",
        "incident",
        "attempts",
        "sent_at",
        "error",
    ]
    list_filter = ["status", "channel", "event", "incident__severity"]
    list_select_related = ["incident"]
    search_fields = ["text", "last_error", "incident__component", "incident__code"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "incident",
        "event",
        "channel",
        "status",
        "text",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    ]
    actions = [resend]

    @admin.display(description="last error")
    def error(self, alert: Alert) -> str:
        return alert.last_error if len(alert.last_error) <= 80 else alert.last_error[:79] + "…"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("incident")


@confirmed_action(
    name="doctor_run",
    title="Run the doctor now",
    explanation=(
        "Every check runs on the worker and the snapshot is cached here (failing checks open "
        "incidents, which alert). Select any snapshot to run it."
    ),
)
def doctor_run(
    request: HttpRequest, queryset: QuerySet[Any], reason: str, flags: dict[str, bool]
) -> str:
    from doctor.tasks import doctor_run_task

    result = doctor_run_task.delay()
    for snapshot in queryset[:1]:
        audit_log(request.user, snapshot, f"doctor run requested from the admin: {reason}")
    return f"Doctor run queued (task {result.id}); its snapshot appears here when done."


@admin.register(DoctorSnapshot)
class DoctorSnapshotAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    """Cached doctor runs (the 'doctor: snapshot' schedule, cron_doctor_cache, the API, the
    "run the doctor now" action); read-only."""

    actions = [doctor_run]

    list_display = ["taken_at", "status", "confidence", "failing", "duration_ms", "trigger"]
    list_filter = ["status", "trigger"]
    date_hierarchy = "taken_at"
    readonly_fields = ["taken_at", "status", "confidence", "checks", "duration_ms", "trigger"]

    @admin.display(description="failing checks")
    def failing(self, snapshot: DoctorSnapshot) -> str:
        return ", ".join(c["name"] for c in snapshot.checks if c.get("status") == "fail") or "—"
