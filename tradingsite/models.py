"""Cross-cutting records of the project package: the transactional Firestore outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OutboxEntry(models.Model):
    """A document to mirror to Firestore, written in the same transaction as the change.

    The drain (a Celery task) sends unsent rows in id order with deterministic document ids,
    so a crash between commit and send delays the mirror but never loses or reorders it.
    """

    collection = models.CharField(max_length=255)
    doc_id = models.CharField(max_length=255)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox entries"
        indexes = [
            models.Index(fields=["id"], condition=Q(sent_at__isnull=True), name="outbox_unsent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(collection="") & ~Q(doc_id=""), name="outbox_names_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.collection}/{self.doc_id}"
