from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from tradingsite.models import OutboxEntry
from tradingsite.outbox import OutboxError, enqueue

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_row_commits_with_its_transaction() -> None:
    with transaction.atomic():
        enqueue("risk_state", "current", {"nav": Decimal("1000.50"), "halted": False})

    entry = OutboxEntry.objects.get()
    assert (entry.collection, entry.doc_id, entry.sent_at) == ("risk_state", "current", None)
    # Decimals are carried as exact strings, never floats.
    assert entry.payload == {"nav": "1000.50", "halted": False}


def test_the_row_is_rolled_back_with_its_transaction() -> None:
    class ChangeFailed(Exception):
        pass

    def change() -> None:
        with transaction.atomic():
            enqueue("risk_state", "current", {"nav": "1"})
            raise ChangeFailed

    with pytest.raises(ChangeFailed):
        change()

    assert OutboxEntry.objects.count() == 0


def test_it_refuses_to_enqueue_outside_a_transaction() -> None:
    with pytest.raises(OutboxError, match="inside the transaction"):
        enqueue("risk_state", "current", {"nav": "1"})
    assert OutboxEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("collection", "doc_id"),
    [
        ("", "x"),
        ("risk", ""),
        ("a/b", "x"),
        ("risk", "a/b"),
        ("__x__", "x"),
        ("risk", ".."),
        ("risk", "x" * 1501),
    ],
)
def test_it_refuses_invalid_firestore_ids(collection: str, doc_id: str) -> None:
    with pytest.raises(OutboxError), transaction.atomic():
        enqueue(collection, doc_id, {"a": 1})
    assert OutboxEntry.objects.count() == 0


def test_it_refuses_payloads_that_are_not_json_objects() -> None:
    with pytest.raises(OutboxError), transaction.atomic():
        enqueue("risk", "x", {"nav": float("nan")})
    assert OutboxEntry.objects.count() == 0


def test_entries_keep_the_order_they_were_written_in() -> None:
    with transaction.atomic():
        for n in range(5):
            enqueue("nav", "latest", {"n": n})
    assert [e.payload["n"] for e in OutboxEntry.objects.all()] == [0, 1, 2, 3, 4]
