from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from doctor.models import Heartbeat
from tests.conftest import Process, child_env, wait_for
from tradingsite.schedules import schedules_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def beat_process(transactional_db: None) -> Iterator[Process]:
    schedules_sync()
    process = Process(
        "celery-beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tradingsite",
            "beat",
            "--loglevel",
            "INFO",
            "--pidfile=",
        ],
        child_env(),
    )
    try:
        yield process
    finally:
        process.stop()


def test_beat_sends_the_declared_schedules_to_the_workers_and_beats_itself(
    celery_worker_process: Process, beat_process: Process
) -> None:
    def components() -> set[str]:
        beat_process.assert_running()
        return set(Heartbeat.objects.values_list("component", flat=True))

    wait_for(
        lambda: components() >= {"beat", "worker", "ml"},
        timeout=120,
        interval=0.5,
        what=lambda: f"heartbeats from beat and both queues; beat log:\n{beat_process.log()}",
    )
    worker_beat = Heartbeat.objects.filter(component="worker").first()
    assert worker_beat is not None
    assert worker_beat.hostname.startswith("test-")
