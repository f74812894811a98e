from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from rest_framework.authtoken import admin as _drf_token_admin  # noqa: F401 - registers first
from rest_framework.authtoken.models import TokenProxy

from tradingsite.admin_actions import OperatorAdminMixin, ReadOnlyAdmin
from tradingsite.firestore import outbox_requeue
from tradingsite.models import OutboxDrainState, OutboxEntry


class OutboxStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("waiting", "waiting"), ("sent", "sent"), ("parked", "parked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        match self.value():
            case "waiting":
                return queryset.filter(sent_at__isnull=True, parked_at__isnull=True)
            case "sent":
                return queryset.filter(sent_at__isnull=False)
            case "parked":
                return queryset.filter(Q(parked_at__isnull=False))
        return queryset


@admin.action(description="Re-queue the selected parked rows", permissions=["operate"])
def requeue(modeladmin: OutboxEntryAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    selected = list(queryset.values_list("pk", flat=True))
    queued = outbox_requeue(ids=selected)
    skipped = len(selected) - queued
    note = f" ({skipped} not parked, left alone)" if skipped else ""
    modeladmin.message_user(
        request,
        f"{queued} row(s) queued again{note}. A row older than one already sent for its "
        "document is skipped as superseded; a payload Firestore refuses is parked again.",
        messages.SUCCESS,
    )


@admin.register(OutboxEntry)
class OutboxEntryAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    """Written only by the services and the drain; operators re-queue parked rows."""

    list_display = [
        "id",
        "collection",
        "doc_id",
        "created_at",
        "sent_at",
        "parked_at",
        "attempts",
        "error",
    ]
    list_filter = [OutboxStateFilter, "collection"]
    search_fields = ["collection", "doc_id", "last_error"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "collection",
        "doc_id",
        "payload",
        "created_at",
        "sent_at",
        "parked_at",
        "attempts",
        "last_error",
    ]
    actions = [requeue]

    @admin.display(description="last error")
    def error(self, entry: OutboxEntry) -> str:
        return entry.last_error if len(entry.last_error) <= 80 else entry.last_error[:79] + "…"


@admin.register(OutboxDrainState)
class OutboxDrainStateAdmin(OperatorAdminMixin, ReadOnlyAdmin):
    list_display = [
        "consecutive_failures",
        "backoff_until",
        "last_success_at",
        "last_failure_at",
        "last_error",
    ]
    readonly_fields = [
        "consecutive_failures",
        "backoff_until",
        "last_error",
        "last_failure_at",
        "last_success_at",
        "last_pruned_at",
    ]


# API tokens are secrets, and a token's primary key is its key: DRF's admin would print it in
# every list, link and checkbox. Tokens are managed with `manage.py api_token` (which shows a
# key once; --revoke removes one), never in the admin.
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)
