"""The outbox in the admin (inspect, filter, re-queue parked rows) and the drain task."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from tests.firestore_support import FirestoreProject
from tradingsite.firestore import DRAIN_LOCK
from tradingsite.locks import single_flight
from tradingsite.models import OutboxEntry
from tradingsite.outbox import enqueue
from tradingsite.tasks import outbox_drain_task

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def rows() -> tuple[OutboxEntry, OutboxEntry]:
    with transaction.atomic():
        waiting = enqueue("nav", "latest", {"n": 1})
        parked = enqueue("incidents", "7", {"": "refused"})
    OutboxEntry.objects.filter(pk=parked.pk).update(parked_at=T0, last_error="ValueError: x")
    return waiting, parked


def test_the_admin_filters_by_state_and_re_queues_parked_rows(
    client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_superuser("root", "", "a-long-secret-4"))
    waiting, parked = rows()

    listing = client.get("/admin/tradingsite/outboxentry/?state=parked")
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset) == [parked]
    assert list(
        client.get("/admin/tradingsite/outboxentry/?state=waiting").context["cl"].queryset
    ) == [waiting]
    assert client.get(f"/admin/tradingsite/outboxentry/{parked.pk}/change/").status_code == 200
    assert client.get("/admin/tradingsite/outboxdrainstate/").status_code == 200

    answer = client.post(
        "/admin/tradingsite/outboxentry/",
        {"action": "requeue", "_selected_action": [parked.pk, waiting.pk]},
        follow=True,
    )

    assert "1 row(s) queued again (1 not parked, left alone)" in answer.content.decode()
    parked.refresh_from_db()
    assert (parked.parked_at, parked.attempts) == (None, 0)


def test_a_viewer_cannot_re_queue(client: Client, viewer_user: User) -> None:
    viewer_user.is_staff = True
    viewer_user.save()
    client.force_login(viewer_user)
    _, parked = rows()

    client.post(
        "/admin/tradingsite/outboxentry/",
        {"action": "requeue", "_selected_action": [parked.pk]},
    )

    parked.refresh_from_db()
    assert parked.parked_at == T0


def test_the_drain_task_is_single_flight(firestore: FirestoreProject) -> None:
    with transaction.atomic():
        enqueue("nav", "latest", {"n": 1})

    with single_flight(DRAIN_LOCK, ttl_seconds=30) as held:
        assert held.acquired
        skipped = outbox_drain_task()
    done = outbox_drain_task()

    assert (skipped["skipped"], skipped["written"]) == ("another drain is running", 0)
    assert (done["written"], done["remaining"], done["error"]) == (1, 0, "")
    assert firestore.documents("nav") == {"latest": {"n": 1}}
