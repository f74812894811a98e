"""Benchmark: the Firestore outbox drain against the npm emulator (issue 7).

Not a test: ``make bench`` calls ``run()`` with Django set up (PostgreSQL). The emulator is
started on a free port for the run and stopped after it. ROWS outbox rows are enqueued for
DOCUMENTS documents (each document changed CHANGES times, as a live system changes NAV and
positions between drains), then ``outbox_drain`` sends them: batched ``set()`` commits, the
newest payload per document. Baseline, on the same rows and the same emulator: the naive
mirror, one ``set()`` call per outbox row in id order. Both end with Firestore equal to the
newest payloads. Everything written (outbox rows, the emulator) is removed at the end.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

DOCUMENTS = 200
CHANGES = 10
ROWS = DOCUMENTS * CHANGES
COLLECTION_PREFIX = "bench"


def _enqueue(collection: str) -> list[int]:
    from django.db import transaction

    from tradingsite.outbox import enqueue

    ids: list[int] = []
    with transaction.atomic():
        for change in range(CHANGES):
            for document in range(DOCUMENTS):
                row = enqueue(
                    collection,
                    f"doc-{document}",
                    {"change": change, "nav": f"{10000 + change}.12345678", "symbol": "BTCUSDT"},
                )
                ids.append(row.pk)
    return ids


def run() -> list[dict[str, Any]]:
    from django.conf import settings
    from django.utils import timezone

    from tests.conftest import free_port
    from tests.firestore_support import FirestoreEmulator
    from tradingsite.firestore import outbox_drain
    from tradingsite.guard import firestore_client_for_writing
    from tradingsite.models import OutboxDrainState, OutboxEntry

    emulator = FirestoreEmulator(free_port())
    emulator.start()
    saved = (settings.FIRESTORE_PROJECT, settings.FIRESTORE_EMULATOR_HOST)
    saved_env = os.environ.get("FIRESTORE_EMULATOR_HOST")
    settings.FIRESTORE_PROJECT = f"bench-{uuid.uuid4().hex[:8]}"
    settings.FIRESTORE_EMULATOR_HOST = emulator.host
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    # Only this run's rows are sent: rows a bench database may hold are set aside.
    others = list(
        OutboxEntry.objects.filter(sent_at__isnull=True, parked_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    drain_collection = f"{COLLECTION_PREFIX}_drain"
    naive_collection = f"{COLLECTION_PREFIX}_naive"
    try:
        OutboxEntry.objects.filter(pk__in=others).update(parked_at=timezone.now())
        OutboxDrainState.objects.all().delete()
        client = firestore_client_for_writing()

        # The naive mirror: one set() per row.
        naive_ids = _enqueue(naive_collection)
        rows = list(OutboxEntry.objects.filter(pk__in=naive_ids).order_by("id"))
        started = time.perf_counter()
        for row in rows:
            client.collection(row.collection).document(row.doc_id).set(row.payload)
        naive = time.perf_counter() - started
        OutboxEntry.objects.filter(pk__in=naive_ids).delete()

        # The drain.
        drain_ids = _enqueue(drain_collection)
        started = time.perf_counter()
        report = outbox_drain(max_batches=ROWS)
        drained = time.perf_counter() - started
        if report.remaining or report.error:
            raise RuntimeError(f"the drain did not finish: {report}")
        documents = {s.id: s.to_dict() or {} for s in client.collection(drain_collection).stream()}
        if len(documents) != DOCUMENTS or any(
            d["change"] != CHANGES - 1 for d in documents.values()
        ):
            raise RuntimeError("the drained documents are not the newest payloads")
        OutboxEntry.objects.filter(pk__in=drain_ids).delete()
    finally:
        OutboxEntry.objects.filter(pk__in=others).update(parked_at=None)
        OutboxDrainState.objects.all().delete()
        settings.FIRESTORE_PROJECT, settings.FIRESTORE_EMULATOR_HOST = saved
        if saved_env is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved_env
        emulator.stop()
    return [
        {
            "name": f"Firestore outbox drain, {ROWS} rows of {DOCUMENTS} documents",
            "seconds": round(drained, 6),
            "baseline_name": "one set() per outbox row (no batching, no coalescing)",
            "baseline_seconds": round(naive, 6),
            "ratio": round(drained / naive, 3),
            "goal": "faster than the baseline",
            "met": drained < naive,
            "note": (
                f"Firestore drain: {ROWS / drained:,.0f} outbox rows/s "
                f"({report.written} documents written, {report.batches} batch(es)), against "
                f"{ROWS / naive:,.0f} rows/s for one set() per row, on the npm emulator "
                "(a real Firestore adds a network round trip per commit, which batching saves "
                "more of)."
            ),
        }
    ]
