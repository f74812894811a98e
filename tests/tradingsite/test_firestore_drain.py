"""Draining the outbox into the real Firestore emulator: batches, coalescing, parking, back-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from pytest_django.fixtures import Settings

from tests.conftest import wait_for
from tests.firestore_support import FirestoreProject
from tradingsite.firestore import (
    BACKOFF_CAP_SECONDS,
    DrainReport,
    PayloadRefused,
    backoff_seconds,
    error_is_permanent,
    outbox_drain,
    outbox_prune,
    outbox_requeue,
    outbox_status,
)
from tradingsite.models import OutboxDrainState, OutboxEntry
from tradingsite.outbox import enqueue

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def put(collection: str, doc_id: str, payload: dict[str, Any]) -> OutboxEntry:
    with transaction.atomic():
        return enqueue(collection, doc_id, payload)


def waiting() -> list[OutboxEntry]:
    return list(OutboxEntry.objects.filter(sent_at__isnull=True, parked_at__isnull=True))


def test_rows_are_written_under_their_ids_and_marked_sent(firestore: FirestoreProject) -> None:
    # given
    put("positions", "BTCUSDT", {"symbol": "BTCUSDT", "quantity": "0.00100000"})
    put("nav", "latest", {"nav": "1000.50", "halted": False, "n": 3, "p": 0.25, "none": None})

    # when
    report = outbox_drain(now=T0)

    # then
    assert (report.written, report.sent, report.remaining, report.error) == (2, 2, 0, "")
    assert firestore.documents("positions") == {
        "BTCUSDT": {"symbol": "BTCUSDT", "quantity": "0.00100000"}
    }
    # Decimals stay exact strings in Firestore; JSON types come back as they went.
    assert firestore.documents("nav") == {
        "latest": {"nav": "1000.50", "halted": False, "n": 3, "p": 0.25, "none": None}
    }
    assert not waiting()
    assert set(OutboxEntry.objects.values_list("sent_at", flat=True)) == {T0}
    status = outbox_status(now=T0)
    assert (status.backlog, status.parked, status.last_success_at) == (0, 0, T0)


def test_a_document_gets_only_its_newest_payload_and_never_an_older_one_later(
    firestore: FirestoreProject,
) -> None:
    # given three rows of one document, another document in between
    put("nav", "latest", {"n": 1})
    put("positions", "ETHUSDT", {"n": 1})
    put("nav", "latest", {"n": 2})
    put("nav", "latest", {"n": 3})

    # when one batch of two goes
    first = outbox_drain(batch_size=2, max_batches=1, now=T0)

    # then the document's older rows were superseded across the whole backlog (not just the
    # batch): each document written once, with its newest payload
    assert (first.written, first.sent) == (2, 4)
    assert firestore.documents("nav") == {"latest": {"n": 3}}
    assert firestore.documents("positions") == {"ETHUSDT": {"n": 1}}
    assert not waiting()

    # and the next changes: again only the newest of them is written
    put("nav", "latest", {"n": 4})
    put("nav", "latest", {"n": 5})
    second = outbox_drain(batch_size=10, max_batches=1, now=T0)
    assert (second.written, second.sent) == (1, 2)
    assert firestore.documents("nav") == {"latest": {"n": 5}}


def test_a_row_older_than_a_sent_row_of_its_document_is_never_written(
    firestore: FirestoreProject,
) -> None:
    # given an older row that was parked while a newer one of its document went out
    older = put("risk_state", "current", {"version": 1})
    OutboxEntry.objects.filter(pk=older.pk).update(parked_at=T0, last_error="refused")
    put("risk_state", "current", {"version": 2})
    assert outbox_drain(now=T0).written == 1

    # when an operator re-queues the older row
    assert outbox_requeue(ids=[older.pk]) == 1
    report = outbox_drain(now=T0 + timedelta(seconds=5))

    # then it is skipped as superseded: the newer payload stays
    assert (report.written, report.sent) == (0, 1)
    assert firestore.documents("risk_state") == {"current": {"version": 2}}


def test_a_poison_row_is_parked_and_the_others_are_still_sent(firestore: FirestoreProject) -> None:
    # given a payload Firestore cannot take (an empty field name) between two good ones
    put("incidents", "1", {"code": "ok-before"})
    poison = put("incidents", "2", {"": "an empty field name"})
    put("incidents", "3", {"code": "ok-after"})
    too_big = put("incidents", "4", {"blob": "x" * 1_100_000})

    # when
    report = outbox_drain(now=T0)

    # then
    assert (report.written, report.parked, report.error) == (2, 2, "")
    assert firestore.documents("incidents") == {
        "1": {"code": "ok-before"},
        "3": {"code": "ok-after"},
    }
    for row in (poison, too_big):
        row.refresh_from_db()
        assert (row.parked_at, row.sent_at, row.attempts) == (T0, None, 1)
    assert "ValueError" in poison.last_error
    assert "1 MiB" in too_big.last_error
    status = outbox_status(now=T0)
    assert (status.parked, status.backlog) == (2, 0)
    assert "incidents/" in status.last_error  # the doctor can name it
    # Parked rows are not retried by themselves ...
    assert outbox_drain(now=T0 + timedelta(minutes=1)).written == 0
    poison.refresh_from_db()
    assert poison.attempts == 1
    # ... and do not hold back a newer payload of their own document.
    put("incidents", "2", {"code": "fixed"})
    assert outbox_drain(now=T0 + timedelta(minutes=2)).written == 1
    assert firestore.documents("incidents")["2"] == {"code": "fixed"}


def test_a_drain_against_a_stopped_emulator_fails_fast_keeps_the_rows_and_backs_off(
    firestore: FirestoreProject,
) -> None:
    # given
    put("nav", "latest", {"n": 1})
    put("positions", "BTCUSDT", {"n": 1})
    firestore.emulator.stop()

    # when
    failed = outbox_drain(now=T0)

    # then nothing is lost, an attempt is counted and the drain backs off
    assert failed.error.startswith("ServiceUnavailable"), failed
    assert (failed.written, failed.remaining) == (0, 2)
    assert {row.attempts for row in waiting()} == {1}
    assert failed.backoff_until == T0 + timedelta(seconds=backoff_seconds(1))
    status = outbox_status(now=T0)
    assert (status.backlog, status.backoff_until) == (2, failed.backoff_until)
    assert status.last_error.startswith("ServiceUnavailable")

    # while backing off, a drain does not try (no attempt counted)
    skipped = outbox_drain(now=T0 + timedelta(seconds=1))
    assert skipped.skipped.startswith("backing off")
    assert {row.attempts for row in waiting()} == {1}

    # the next failure doubles the wait
    again = outbox_drain(now=T0 + timedelta(seconds=6))
    assert again.backoff_until == T0 + timedelta(seconds=6 + backoff_seconds(2))
    assert OutboxDrainState.objects.get().consecutive_failures == 2

    # when the emulator is back, the backlog drains and the back-off is cleared
    firestore.emulator.start()
    clock = iter(T0 + timedelta(minutes=10 * n) for n in range(1, 1000))

    def drained() -> DrainReport | None:
        report = outbox_drain(now=next(clock))
        return report if report.ok else None

    report = wait_for(drained, timeout=120, interval=0.5, what="the backlog to drain")
    assert (report.written, report.remaining) == (2, 0)
    assert firestore.documents("nav") == {"latest": {"n": 1}}
    state = OutboxDrainState.objects.get()
    assert (state.consecutive_failures, state.backoff_until, state.last_error) == (0, None, "")


def test_the_back_off_doubles_up_to_a_cap() -> None:
    waits = [backoff_seconds(n) for n in range(1, 12)]
    assert waits[:4] == [5, 10, 20, 40]
    assert waits == sorted(waits)
    assert max(waits) == BACKOFF_CAP_SECONDS == 300


def test_errors_about_a_payload_are_permanent_and_errors_about_firestore_are_not() -> None:
    from google.api_core import exceptions

    def error(kind: Any) -> BaseException:
        made: BaseException = kind("message")
        return made

    for permanent in (exceptions.InvalidArgument, exceptions.OutOfRange, PayloadRefused):
        assert error_is_permanent(error(permanent))
    for transient in (
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
        exceptions.PermissionDenied,
        exceptions.ResourceExhausted,
        exceptions.NotFound,
        ConnectionRefusedError,
        ValueError,  # e.g. "Cannot invoke RPC on closed channel!": not about a payload
        TypeError,
    ):
        assert not error_is_permanent(error(transient))


def test_with_firestore_off_the_drain_does_nothing_and_rows_accumulate(
    settings: Settings,
) -> None:
    settings.FIRESTORE_PROJECT = ""
    put("nav", "latest", {"n": 1})

    report = outbox_drain(now=T0)

    assert report.skipped.startswith("disabled: FIRESTORE_PROJECT")
    assert len(waiting()) == 1
    status = outbox_status(now=T0 + timedelta(seconds=30))
    assert (status.enabled, status.backlog) == (False, 1)
    assert "FIRESTORE_PROJECT" in status.disabled_reason
    # created_at is the real clock; the age is measured from the moment asked about
    assert status.oldest_unsent_age_seconds is not None


def test_prune_deletes_only_rows_sent_long_ago() -> None:
    old, recent, unsent, parked = (put("nav", "latest", {"n": n}) for n in range(4))
    OutboxEntry.objects.filter(pk=old.pk).update(sent_at=T0 - timedelta(days=8))
    OutboxEntry.objects.filter(pk=recent.pk).update(sent_at=T0 - timedelta(days=1))
    OutboxEntry.objects.filter(pk=parked.pk).update(parked_at=T0 - timedelta(days=30))

    assert outbox_prune(now=T0) == 1

    assert set(OutboxEntry.objects.values_list("pk", flat=True)) == {
        recent.pk,
        unsent.pk,
        parked.pk,
    }


def test_prune_keeps_one_waiting_row_per_document_while_the_mirror_is_off() -> None:
    # Many changes of two documents while nothing drains (Firestore off or down).
    navs = [put("nav", "latest", {"n": n}) for n in range(5)]
    positions = [put("positions", "BTCUSDT", {"q": n}) for n in range(3)]
    parked = put("positions", "ETHUSDT", {"q": "bad"})
    OutboxEntry.objects.filter(pk=parked.pk).update(parked_at=T0)
    newer_than_parked = put("positions", "ETHUSDT", {"q": "good"})

    assert outbox_prune(now=T0) == 4 + 2

    # The newest waiting row of each document survives, so the mirror loses nothing; parked
    # rows are left for an operator.
    assert set(OutboxEntry.objects.values_list("pk", flat=True)) == {
        navs[-1].pk,
        positions[-1].pk,
        parked.pk,
        newer_than_parked.pk,
    }


def test_prune_keeps_each_documents_newest_sent_row() -> None:
    # The newest sent row tells the drain what Firestore holds: a parked row re-queued later
    # must still be recognised as older than it.
    older, newest = (put("nav", "latest", {"n": n}) for n in range(2))
    OutboxEntry.objects.filter(pk__in=[older.pk, newest.pk]).update(sent_at=T0 - timedelta(days=30))

    assert outbox_prune(now=T0) == 1

    assert list(OutboxEntry.objects.values_list("pk", flat=True)) == [newest.pk]
