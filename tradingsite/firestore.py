"""The Firestore mirror (SPEC §10): draining the outbox, its status, comparing and repairing.

Services write ``OutboxEntry`` rows in the transaction of each change
(``tradingsite.outbox.enqueue``); this module is the only one that talks to Firestore, through
the client the environment guard hands out (``firestore_client_for_writing``).

How the drain behaves, and why:

- **Order.** Waiting rows go in id order, in batches written with ``WriteBatch.set()`` under
  deterministic ids (``collection/doc_id``): a plain set is idempotent, so a batch sent twice
  (a crash before ``sent_at`` was stored) does no harm. No transforms (a retried commit could
  apply an ``Increment`` twice) and no BulkWriter (the emulator drops its writes).
- **Coalescing.** Each payload is the whole document, so of a document's waiting rows only
  the newest is written: before each batch the older ones, across the whole backlog, are
  marked sent as *superseded* (after an outage each document is written once, not once per
  change it missed), and rows of one document within a batch are written once. A row older
  than a row of its document that was already sent (a transaction that committed late) is
  superseded too: an older payload is never written after a newer one.
- **Fail fast.** A commit has a short explicit timeout and no library retry: a down Firestore
  costs one quick failed call, never a worker stuck in retries.
- **Transient failures** (unavailable, deadline, connection refused, quota, permissions —
  anything not about one payload) leave the rows waiting, count an attempt on them and back
  off exponentially (``BACKOFF_BASE_SECONDS`` doubling up to ``BACKOFF_CAP_SECONDS``). The
  back-off lives in ``OutboxDrainState`` where the doctor reads it.
- **Permanent failures** (Firestore or the client refuses a payload: InvalidArgument, a value
  it cannot encode, a document over the size limit) make the drain send that batch's documents
  one by one; the offending row is *parked* with its error and never retried by itself (an
  operator re-queues it in the admin), so it cannot hold back other documents.
- **Disabled.** Without ``FIRESTORE_PROJECT`` the drain does nothing: rows accumulate in the
  outbox (they are the mirror's memory: configuring Firestore later sends them, and
  ``publish_state`` sends the current state in any case), and the doctor warns that the mirror
  is off with the backlog it has. Pruning still removes old *sent* rows only.
- **One drain at a time.** Two drains interleaving could write an older payload over a newer
  one, so every drain (the periodic task, ``publish_state``, ``fs_doctor --repair``) holds the
  same Redis single-flight lock.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone
from google.api_core import exceptions as api_exceptions
from redis.exceptions import LockNotOwnedError

from tradingsite.guard import (
    firestore_client_for_writing,
)
from tradingsite.locks import SingleFlight, single_flight
from tradingsite.mirrors import (
    COLLECTION_NAMES,
    LOCKED_COLLECTIONS,
    Document,
    mirror_expected,
    mirror_sources_lock,
)
from tradingsite.models import OutboxDrainState, OutboxEntry
from tradingsite.outbox import enqueue

if TYPE_CHECKING:
    from google.cloud.firestore_v1.batch import WriteBatch

    from tradingsite.guard import FirestoreClient

__all__ = [
    "CollectionDiff",
    "DrainReport",
    "MirrorDiff",
    "OutboxStatus",
    "firestore_client",
    "firestore_enabled",
    "mirror_compare",
    "mirror_enqueue",
    "mirror_publish",
    "mirror_repair",
    "outbox_drain",
    "outbox_prune",
    "outbox_requeue",
    "outbox_status",
]

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# A few commits per run at most, so a run stays well inside the task's time limit.
MAX_BATCHES = 25
# Firestore's own documents limit is 1 MiB; a payload over it can never be written.
MAX_DOCUMENT_BYTES = 1_000_000
# A commit request is one gRPC message (the emulator, like many servers, takes at most 4 MiB).
MAX_BATCH_BYTES = 3_000_000
COMMIT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 300.0
PRUNE_AFTER = timedelta(days=7)
PRUNE_EVERY = timedelta(hours=1)
PRUNE_CHUNK = 10_000
DRAIN_LOCK = "firestore-outbox-drain"
DRAIN_LOCK_TTL_SECONDS = 120.0

# protobuf ships no type stubs; its base error class is all this module needs from it.
_ProtobufError: type[Exception] = importlib.import_module("google.protobuf.message").Error


# Errors about one payload: writing it again can never succeed. Everything else (unavailable,
# deadline, quota, permissions, a missing database) is about Firestore or the setup and clears
# when they are fixed, so it is retried with back-off rather than parking every row.
class PayloadRefused(ValueError):
    """The client could not turn one row's payload into a write (raised from ``batch.set``)."""


# A ValueError or TypeError counts only when raised while encoding one payload (wrapped as
# PayloadRefused): the same types from the transport (a closed gRPC channel) are not about a
# payload, and treating them as such would park every row.
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.InvalidArgument,
    api_exceptions.OutOfRange,
    PayloadRefused,  # an empty key, an int over 64 bits, a document over 1 MiB
    RecursionError,  # nesting deeper than the encoder goes
    _ProtobufError,  # nesting deeper than protobuf allows
)


def error_is_permanent(error: BaseException) -> bool:
    """True when ``error`` is about the payload (park it), False when retrying may work."""
    return isinstance(error, _PERMANENT_ERRORS)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


# --- enabled? --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirestoreEnabled:
    enabled: bool
    reason: str

    def __bool__(self) -> bool:
        return self.enabled


def firestore_enabled() -> FirestoreEnabled:
    """Whether the mirror is configured; ``reason`` says why not (shown by the doctor)."""
    if not settings.FIRESTORE_PROJECT:
        return FirestoreEnabled(False, "FIRESTORE_PROJECT is not set")
    return FirestoreEnabled(True, "")


def firestore_client() -> FirestoreClient:
    """The guard's client; raises FirestoreNotConfigured or ProdWriteRefused (with what to set)."""
    return firestore_client_for_writing()


# --- the drain state (back-off) --------------------------------------------------------------


def _drain_state(*, lock: bool = False) -> OutboxDrainState:
    rows = OutboxDrainState.objects.select_for_update() if lock else OutboxDrainState.objects
    state, _ = rows.get_or_create(pk=OutboxDrainState.SINGLETON_ID)
    return state


def backoff_seconds(consecutive_failures: int) -> float:
    """5 s, 10 s, 20 s, … capped at 5 minutes: a Firestore outage costs one call per step."""
    if consecutive_failures <= 0:
        return 0.0
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (consecutive_failures - 1))


def _record_failure(error: str, *, now: datetime) -> datetime:
    with transaction.atomic():
        state = _drain_state(lock=True)
        state.consecutive_failures += 1
        state.backoff_until = now + timedelta(seconds=backoff_seconds(state.consecutive_failures))
        state.last_error = error
        state.last_failure_at = now
        state.save()
    logger.warning(
        "Firestore outbox drain failed (%s in a row, next try after %s): %s",
        state.consecutive_failures,
        state.backoff_until.isoformat(),
        error,
    )
    return state.backoff_until


def _record_success(*, now: datetime) -> None:
    _drain_state()
    OutboxDrainState.objects.filter(pk=OutboxDrainState.SINGLETON_ID).update(
        consecutive_failures=0, backoff_until=None, last_error="", last_success_at=now
    )


# --- the drain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainReport:
    """What one drain did. ``skipped`` says why nothing was attempted (disabled, backing off,
    another drain running); ``error`` is the transient failure that stopped it."""

    written: int = 0  # documents written to Firestore
    sent: int = 0  # rows marked sent (written, or superseded by a newer row of their document)
    parked: int = 0
    batches: int = 0
    remaining: int = 0  # rows still waiting afterwards
    skipped: str = ""
    error: str = ""
    backoff_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.error


@dataclass
class _BatchOutcome:
    written: int = 0
    sent: int = 0
    parked: int = 0
    error: str = ""

    def report(
        self, *, batches: int, error: str = "", backoff_until: datetime | None = None
    ) -> DrainReport:
        return DrainReport(
            written=self.written,
            sent=self.sent,
            parked=self.parked,
            batches=batches,
            remaining=_waiting().count(),
            error=error,
            backoff_until=backoff_until,
        )


def _waiting() -> QuerySet[OutboxEntry]:
    return OutboxEntry.objects.filter(sent_at__isnull=True, parked_at__isnull=True)


@contextmanager
def _drain_lock(*, wait_seconds: float) -> Iterator[SingleFlight]:
    deadline = time.monotonic() + wait_seconds
    while True:
        with single_flight(DRAIN_LOCK, ttl_seconds=DRAIN_LOCK_TTL_SECONDS) as held:
            if held.acquired or time.monotonic() >= deadline:
                yield held
                return
        time.sleep(0.2)


def outbox_drain(
    *,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
    now: datetime | None = None,
    lock_wait_seconds: float = 0.0,
    ignore_backoff: bool = False,
) -> DrainReport:
    """Send waiting outbox rows to Firestore (see the module docstring for the rules).

    ``now`` (the clock for back-off and ``sent_at``) is injectable so tests never sleep;
    ``lock_wait_seconds`` lets a command wait for a running drain instead of skipping, and
    ``ignore_backoff`` lets an operator's command try now.
    """
    if batch_size < 1 or max_batches < 1:
        raise ValueError("batch_size and max_batches must be at least 1")
    moment = now or timezone.now()
    enabled = firestore_enabled()
    if not enabled:
        return DrainReport(skipped=f"disabled: {enabled.reason}", remaining=_waiting().count())
    state = _drain_state()
    if not ignore_backoff and state.backoff_until is not None and state.backoff_until > moment:
        return DrainReport(
            skipped=f"backing off after {state.consecutive_failures} failure(s)",
            backoff_until=state.backoff_until,
            error=state.last_error,
            remaining=_waiting().count(),
        )
    with _drain_lock(wait_seconds=lock_wait_seconds) as held:
        if not held.acquired:
            return DrainReport(skipped="another drain is running", remaining=_waiting().count())
        try:
            client = firestore_client_for_writing()
        except Exception as refused:  # refused by the guard, or no credentials: back off
            until = _record_failure(_describe(refused), now=moment)
            return DrainReport(
                error=_describe(refused), backoff_until=until, remaining=_waiting().count()
            )
        totals = _BatchOutcome()
        batches = 0
        for _ in range(max_batches):
            totals.sent += _supersede_waiting(now=moment)
            rows = list(_waiting().order_by("id")[:batch_size])
            if not rows:
                break
            try:
                outcome = _batch_send(client, rows, now=moment, renew=held.renew)
            except LockNotOwnedError:
                # Another drain may hold the lock now: stop before writing anything older.
                logger.error("the outbox drain lost its lock mid-run; stopping")
                return totals.report(batches=batches, error="the drain lock expired mid-run")
            batches += 1
            totals.written += outcome.written
            totals.sent += outcome.sent
            totals.parked += outcome.parked
            if outcome.error:
                until = _record_failure(outcome.error, now=moment)
                return totals.report(batches=batches, error=outcome.error, backoff_until=until)
            held.renew()
        if batches:
            _record_success(now=moment)
        return totals.report(batches=batches)


@dataclass
class _Write:
    """One document to write: the newest waiting row of it and the older rows it supersedes."""

    row: OutboxEntry
    superseded: list[OutboxEntry] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [self.row.pk, *(r.pk for r in self.superseded)]


def _supersede_waiting(*, now: datetime) -> int:
    """Mark sent every waiting row a newer waiting row of its document supersedes, across the
    whole backlog (a batch only coalesces within itself): after an outage each document is
    written once, with its newest payload, instead of once per change it missed."""
    newer_waiting = _waiting().filter(
        collection=OuterRef("collection"), doc_id=OuterRef("doc_id"), id__gt=OuterRef("id")
    )
    return _waiting().filter(Exists(newer_waiting)).update(sent_at=now)


def _newest_sent_ids(rows: list[OutboxEntry]) -> dict[tuple[str, str], int]:
    documents = {(r.collection, r.doc_id) for r in rows}
    match = Q()
    for collection, doc_id in documents:
        match |= Q(collection=collection, doc_id=doc_id)
    newest = (
        OutboxEntry.objects.filter(match, sent_at__isnull=False, parked_at__isnull=True)
        .values("collection", "doc_id")
        .annotate(newest=Max("id"))
        .order_by()
    )
    return {(n["collection"], n["doc_id"]): n["newest"] for n in newest}


def _coalesced(rows: list[OutboxEntry]) -> tuple[list[_Write], list[OutboxEntry]]:
    """The writes of a batch (newest row per document, in id order) and the stragglers: rows
    older than a row of their document already sent."""
    already_sent = _newest_sent_ids(rows)
    by_document: dict[tuple[str, str], _Write] = {}
    stragglers: list[OutboxEntry] = []
    for row in rows:  # id order
        key = (row.collection, row.doc_id)
        if row.pk < already_sent.get(key, 0):
            stragglers.append(row)
            continue
        write = by_document.get(key)
        if write is None:
            by_document[key] = _Write(row=row)
        else:
            write.superseded.append(write.row)
            write.row = row
    writes = sorted(by_document.values(), key=lambda w: w.row.pk)
    return writes, stragglers


def _mark_sent(ids: list[int], *, now: datetime) -> int:
    if not ids:
        return 0
    return OutboxEntry.objects.filter(pk__in=ids, sent_at__isnull=True).update(sent_at=now)


def _park(write: _Write, error: str, *, now: datetime) -> None:
    logger.error("Firestore refused %s (outbox #%s), parked: %s", write.row, write.row.pk, error)
    OutboxEntry.objects.filter(pk=write.row.pk).update(
        parked_at=now, last_error=error, attempts=write.row.attempts + 1
    )
    # The older rows were superseded by the parked one: writing them would put a payload older
    # than the database's in Firestore. fs_doctor shows the document stale; --repair fixes it.
    _mark_sent([r.pk for r in write.superseded], now=now)


def _count_attempt(ids: list[int], error: str) -> None:
    OutboxEntry.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1, last_error=error)


def _payload_size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


def _batch_add(client: FirestoreClient, batch: WriteBatch, write: _Write) -> None:
    size = _payload_size(write.row.payload)
    if size > MAX_DOCUMENT_BYTES:
        raise PayloadRefused(f"payload of {size} bytes is over Firestore's 1 MiB document limit")
    reference = client.collection(write.row.collection).document(write.row.doc_id)
    try:
        batch.set(reference, write.row.payload)
    except (ValueError, TypeError) as error:
        raise PayloadRefused(f"{type(error).__name__}: {error}") from error


def _commit(client: FirestoreClient, writes: list[_Write]) -> None:
    batch = client.batch()
    for write in writes:
        _batch_add(client, batch, write)
    # No library retry and a short deadline: a down Firestore fails this call at once and the
    # drain backs off by itself (a retried plain set would be harmless, a hung worker is not).
    batch.commit(retry=None, timeout=COMMIT_TIMEOUT_SECONDS)


def _chunks(writes: list[_Write]) -> Iterator[list[_Write]]:
    """Split a batch so one commit request stays under MAX_BATCH_BYTES."""
    chunk: list[_Write] = []
    size = 0
    for write in writes:
        payload_size = _payload_size(write.row.payload)
        if chunk and size + payload_size > MAX_BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(write)
        size += payload_size
    if chunk:
        yield chunk


def _batch_send(
    client: FirestoreClient, rows: list[OutboxEntry], *, now: datetime, renew: Callable[[], None]
) -> _BatchOutcome:
    """``renew`` runs after every commit: it keeps the drain lock, or raises when it was lost
    (a slow Firestore let it expire), so two drains never interleave their writes."""
    writes, stragglers = _coalesced(rows)
    outcome = _BatchOutcome()
    outcome.sent += _mark_sent([r.pk for r in stragglers], now=now)
    for chunk in _chunks(writes):
        try:
            _commit(client, chunk)
        except Exception as error:
            renew()
            if not error_is_permanent(error):
                outcome.error = _describe(error)
                _count_attempt([i for w in chunk for i in w.ids], outcome.error)
                return outcome
            # One document of the chunk is refused: find it by sending them one at a time.
            isolated = _send_one_by_one(client, chunk, now=now, renew=renew)
            outcome.written += isolated.written
            outcome.sent += isolated.sent
            outcome.parked += isolated.parked
            if isolated.error:
                outcome.error = isolated.error
                return outcome
            continue
        renew()
        outcome.written += len(chunk)
        outcome.sent += _mark_sent([i for w in chunk for i in w.ids], now=now)
    return outcome


def _send_one_by_one(
    client: FirestoreClient, writes: list[_Write], *, now: datetime, renew: Callable[[], None]
) -> _BatchOutcome:
    outcome = _BatchOutcome()
    for write in writes:
        try:
            _commit(client, [write])
        except Exception as error:
            renew()
            if error_is_permanent(error):
                _park(write, _describe(error), now=now)
                outcome.parked += 1
                outcome.sent += len(write.superseded)
                continue
            outcome.error = _describe(error)
            _count_attempt(write.ids, outcome.error)
            return outcome
        renew()
        outcome.written += 1
        outcome.sent += _mark_sent(write.ids, now=now)
    return outcome


# --- housekeeping ------------------------------------------------------------------------------


def outbox_prune(*, now: datetime | None = None, older_than: timedelta = PRUNE_AFTER) -> int:
    """Delete rows sent more than ``older_than`` ago, except each document's newest sent row
    (the drain's proof of what Firestore holds: without it a parked row re-queued later could
    be written over a newer document), and waiting rows a newer waiting row of the same
    document supersedes (the drain would only skip them: each payload is the whole document).
    So while the mirror is off the outbox holds one row per document, not every change since.
    Parked rows and the newest waiting row of each document stay. In chunks."""
    moment = now or timezone.now()
    cutoff = moment - older_than

    def newer(**state: Any) -> Exists:
        return Exists(
            OutboxEntry.objects.filter(
                collection=OuterRef("collection"),
                doc_id=OuterRef("doc_id"),
                id__gt=OuterRef("id"),
                **state,
            )
        )

    sent_long_ago = Q(sent_at__lt=cutoff) & Q(newer(sent_at__isnull=False))
    waiting = {"sent_at__isnull": True, "parked_at__isnull": True}
    superseded_waiting = Q(**waiting) & Q(newer(**waiting))
    prunable = sent_long_ago | superseded_waiting
    deleted = 0
    while True:
        ids = list(OutboxEntry.objects.filter(prunable).values_list("id", flat=True)[:PRUNE_CHUNK])
        if not ids:
            break
        deleted += OutboxEntry.objects.filter(pk__in=ids).delete()[0]
    OutboxDrainState.objects.filter(pk=OutboxDrainState.SINGLETON_ID).update(last_pruned_at=moment)
    return deleted


def outbox_prune_if_due(*, now: datetime | None = None) -> int:
    """Prune at most once per PRUNE_EVERY (the drain task runs every few seconds)."""
    moment = now or timezone.now()
    state = _drain_state()
    if state.last_pruned_at is not None and moment - state.last_pruned_at < PRUNE_EVERY:
        return 0
    return outbox_prune(now=moment)


def outbox_requeue(*, ids: list[int]) -> int:
    """Put parked rows back in the queue (the admin's action); returns how many.

    A re-queued row older than a row of its document already sent is skipped by the drain as
    superseded: a stale payload is never written over a newer one.
    """
    return OutboxEntry.objects.filter(pk__in=ids, parked_at__isnull=False).update(
        parked_at=None, attempts=0
    )


# --- status (the doctor's check and /metrics) --------------------------------------------------


@dataclass(frozen=True)
class OutboxStatus:
    enabled: bool
    disabled_reason: str
    backlog: int  # waiting rows (unsent, not parked)
    oldest_unsent_age_seconds: float | None
    parked: int
    last_error: str
    last_success_at: datetime | None
    backoff_until: datetime | None
    consecutive_failures: int = 0
    last_failure_at: datetime | None = None


def outbox_status(*, now: datetime | None = None) -> OutboxStatus:
    """The mirror's health in one read: backlog, lag, parked rows and the drain's back-off."""
    moment = now or timezone.now()
    enabled = firestore_enabled()
    waiting = _waiting().aggregate(backlog=Count("id"), oldest=Min("created_at"))
    backlog = int(waiting["backlog"])
    parked_rows = OutboxEntry.objects.filter(parked_at__isnull=False)
    parked = parked_rows.count()
    state = OutboxDrainState.objects.filter(pk=OutboxDrainState.SINGLETON_ID).first()
    last_error = state.last_error if state is not None else ""
    if not last_error and parked:
        newest = parked_rows.order_by("-parked_at", "-id").first()
        last_error = f"{newest}: {newest.last_error}" if newest is not None else ""
    oldest = waiting["oldest"]
    return OutboxStatus(
        enabled=enabled.enabled,
        disabled_reason=enabled.reason,
        backlog=backlog,
        oldest_unsent_age_seconds=(
            max(0.0, (moment - oldest).total_seconds()) if oldest is not None else None
        ),
        parked=parked,
        last_error=last_error,
        last_success_at=state.last_success_at if state is not None else None,
        backoff_until=state.backoff_until if state is not None else None,
        consecutive_failures=state.consecutive_failures if state is not None else 0,
        last_failure_at=state.last_failure_at if state is not None else None,
    )


# --- comparing the database with Firestore (fs_doctor, publish_state) -----------------------------


@dataclass(frozen=True)
class CollectionDiff:
    name: str
    expected: int
    found: int
    missing: tuple[str, ...]  # in the database, not in Firestore
    stale: tuple[str, ...]  # in both, different
    extra: tuple[str, ...]  # in Firestore, not in the database
    # Missing or different, but a change of it waits in the outbox: the drain is about to
    # send it (a live system always has a few). Not a difference; the doctor watches the lag.
    in_flight: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.stale or self.extra)


@dataclass(frozen=True)
class MirrorDiff:
    collections: tuple[CollectionDiff, ...]

    @property
    def in_sync(self) -> bool:
        return all(c.in_sync for c in self.collections)

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "collections": {
                c.name: {
                    "expected": c.expected,
                    "found": c.found,
                    "missing": list(c.missing),
                    "stale": list(c.stale),
                    "extra": list(c.extra),
                    "in_flight": list(c.in_flight),
                }
                for c in self.collections
            },
        }


def _documents_read(client: FirestoreClient, collection: str) -> dict[str, Document]:
    # A collection query, not list_documents(): the emulator does not implement the latter.
    return {
        snapshot.id: snapshot.to_dict() or {}
        for snapshot in client.collection(collection).stream(
            retry=None, timeout=READ_TIMEOUT_SECONDS
        )
    }


def mirror_compare(
    *, client: FirestoreClient, collections: tuple[str, ...] = COLLECTION_NAMES
) -> tuple[MirrorDiff, dict[str, dict[str, Document]]]:
    """Compare each mirrored collection in Firestore with what the database says it should be.

    Returns the differences and the expected documents (what a repair would enqueue).
    """
    expected = mirror_expected(collections=collections)
    diffs: list[CollectionDiff] = []
    for name, documents in expected.items():
        found = _documents_read(client, name)
        waiting = set(_waiting().filter(collection=name).values_list("doc_id", flat=True))
        missing = set(documents) - set(found)
        stale = {d for d in set(documents) & set(found) if documents[d] != found[d]}
        diffs.append(
            CollectionDiff(
                name=name,
                expected=len(documents),
                found=len(found),
                missing=tuple(sorted(missing - waiting)),
                stale=tuple(sorted(stale - waiting)),
                extra=tuple(sorted(set(found) - set(documents))),
                in_flight=tuple(sorted((missing | stale) & waiting)),
            )
        )
    return MirrorDiff(collections=tuple(diffs)), expected


def mirror_enqueue(documents: dict[str, dict[str, Document]]) -> int:
    """Enqueue ``{collection: {doc_id: payload}}`` in one transaction; returns the row count.

    Used by ``publish_state`` (everything) and ``fs_doctor --repair`` (missing and stale).
    """
    count = 0
    with transaction.atomic():
        for collection, by_id in documents.items():
            for doc_id, payload in by_id.items():
                enqueue(collection, doc_id, payload)
                count += 1
    return count


def _drain_all(*, now: datetime | None) -> DrainReport:
    """Drain until nothing waits or a failure stops it (the operator commands)."""
    written = sent = parked = batches = 0
    for _ in range(100):  # bounded: services may keep enqueueing while this runs
        report = outbox_drain(now=now, lock_wait_seconds=30.0, ignore_backoff=True)
        written, sent = written + report.written, sent + report.sent
        parked, batches = parked + report.parked, batches + report.batches
        if not report.ok or report.remaining == 0 or report.batches == 0:
            return DrainReport(
                written=written,
                sent=sent,
                parked=parked,
                batches=batches,
                remaining=report.remaining,
                skipped=report.skipped,
                error=report.error,
                backoff_until=report.backoff_until,
            )
    return DrainReport(
        written=written, sent=sent, parked=parked, batches=batches, remaining=_waiting().count()
    )


@dataclass(frozen=True)
class PublishReport:
    enqueued: dict[str, int]  # collection -> documents enqueued
    drain: DrainReport


def mirror_publish(*, now: datetime | None = None) -> PublishReport:
    """Enqueue every document the database says the mirror holds, then drain (publish_state).

    The caller has passed the guard (``check_command_write`` and ``firestore_client``).
    """
    # Under the writers' locks only what they lock: on SQLite any transaction that writes holds
    # the whole database, so the append-only collections are built and enqueued after it.
    locked = tuple(c for c in COLLECTION_NAMES if c in LOCKED_COLLECTIONS)
    with transaction.atomic():
        mirror_sources_lock(collections=locked)
        expected = mirror_expected(collections=locked)
        mirror_enqueue(expected)
    rest = mirror_expected(collections=tuple(c for c in COLLECTION_NAMES if c not in locked))
    mirror_enqueue(rest)
    expected.update(rest)
    return PublishReport(
        enqueued={name: len(documents) for name, documents in expected.items()},
        drain=_drain_all(now=now),
    )


@dataclass(frozen=True)
class RepairReport:
    before: MirrorDiff
    enqueued: int
    drain: DrainReport | None
    after: MirrorDiff


def mirror_repair(*, client: FirestoreClient, now: datetime | None = None) -> RepairReport:
    """Compare, enqueue the expected documents of the missing and stale ones, drain, compare
    again (fs_doctor --repair). Extra documents are left alone: deleting data in Firestore is
    an operator's decision. The caller has passed the guard."""
    before, _ = mirror_compare(client=client)
    wanted = {c.name: (*c.missing, *c.stale) for c in before.collections if c.missing or c.stale}
    if not wanted and not any(c.in_flight for c in before.collections):
        return RepairReport(before=before, enqueued=0, drain=None, after=before)
    if not wanted:  # only changes on their way: send them now
        drain = _drain_all(now=now)
        return RepairReport(
            before=before, enqueued=0, drain=drain, after=mirror_compare(client=client)[0]
        )
    # Built again under the writers' locks, in the enqueueing transaction, so the repair
    # carries the newest state and no concurrent change can be overtaken by it.
    with transaction.atomic():
        mirror_sources_lock(collections=tuple(wanted))
        expected = mirror_expected(collections=tuple(wanted))
        enqueued = mirror_enqueue(
            {
                name: {doc_id: expected[name][doc_id] for doc_id in ids if doc_id in expected[name]}
                for name, ids in wanted.items()
            }
        )
    drain = _drain_all(now=now)
    after, _ = mirror_compare(client=client)
    return RepairReport(before=before, enqueued=enqueued, drain=drain, after=after)
