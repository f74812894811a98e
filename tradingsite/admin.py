from __future__ import annotations

from django.contrib import admin

from tradingsite.models import OutboxEntry


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin[OutboxEntry]):
    list_display = ["id", "collection", "doc_id", "created_at", "sent_at", "attempts"]
    list_filter = ["collection", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["collection", "doc_id"]
    readonly_fields = [
        "collection",
        "doc_id",
        "payload",
        "created_at",
        "sent_at",
        "attempts",
        "last_error",
    ]
