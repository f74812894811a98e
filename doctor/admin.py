from __future__ import annotations

from django.contrib import admin

from doctor.models import Heartbeat, Incident


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
