"""Cross-cutting records of the project package: the transactional Firestore outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OutboxEntry(models.Model):
    """A document to mirror to Firestore, written in the same transaction as the change.

    The drain (a Celery task) sends unsent rows in id order with deterministic document ids,
    so a crash between commit and send delays the mirror but never loses or reorders it.
    A row Firestore can never accept (a bad payload) is *parked*: kept with its error, never
    retried by itself, so it cannot hold back the documents behind it; an operator re-queues
    it from the admin.
    """

    collection = models.CharField(max_length=255)
    doc_id = models.CharField(max_length=255)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was written, or found superseded by a newer row of its document.",
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    parked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Firestore refused the payload itself: not retried until re-queued.",
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox entries"
        indexes = [
            # The drain's scan: waiting rows in id order.
            models.Index(
                fields=["id"],
                condition=Q(sent_at__isnull=True, parked_at__isnull=True),
                name="outbox_waiting",
            ),
            # The doctor's count of parked rows (few, looked at every minute).
            models.Index(fields=["id"], condition=Q(parked_at__isnull=False), name="outbox_parked"),
            # The newest sent row of a document (a straggler older than it is never sent).
            models.Index(fields=["collection", "doc_id", "id"], name="outbox_document"),
            # Pruning old sent rows.
            models.Index(fields=["sent_at"], name="outbox_sent_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(collection="") & ~Q(doc_id=""), name="outbox_names_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.collection}/{self.doc_id}"


class OutboxDrainState(models.Model):
    """The drain's memory between runs (one row): back-off after failures, last success.

    Kept in the database rather than in Redis so the doctor, /metrics and the admin read
    the same truth the drain acts on, and a restarted worker keeps backing off.
    """

    SINGLETON_ID = 1

    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbox drain state"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="outbox_drain_state_singleton"),
        ]

    def __str__(self) -> str:
        return f"outbox drain ({self.consecutive_failures} failures in a row)"
