from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from doctor.models import Heartbeat
from doctor.selectors import heartbeats_latest
from doctor.services import HEARTBEAT_RETENTION, heartbeat_record, heartbeats_prune

pytestmark = pytest.mark.django_db


def test_latest_returns_the_newest_heartbeat_of_each_component() -> None:
    now = timezone.now()
    heartbeat_record(component="worker", hostname="old", at=now - timedelta(seconds=20))
    heartbeat_record(component="worker", hostname="new", at=now)
    heartbeat_record(component="ml", hostname="ml", at=now - timedelta(seconds=5))

    latest = [(h.component, h.hostname) for h in heartbeats_latest()]

    assert latest == [("worker", "new"), ("ml", "ml")]


def test_pruning_drops_only_heartbeats_past_the_retention_window() -> None:
    now = timezone.now()
    heartbeat_record(component="worker", at=now - HEARTBEAT_RETENTION - timedelta(seconds=1))
    kept = heartbeat_record(component="worker", at=now - HEARTBEAT_RETENTION + timedelta(hours=1))

    assert heartbeats_prune(now=now) == 1
    assert list(Heartbeat.objects.all()) == [kept]
