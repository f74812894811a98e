from __future__ import annotations

import pytest

from doctor.models import Heartbeat
from doctor.tasks import heartbeat_task
from tests.conftest import Process, wait_for


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_heartbeat_task_through_redis(
    celery_worker_process: Process,
) -> None:
    # given a worker started by the test, listening on the broker (real Redis)
    # when a heartbeat is sent through the broker on each queue a worker serves
    heartbeat_task.apply_async(kwargs={"component": "worker"}, queue="default")
    heartbeat_task.apply_async(kwargs={"component": "ml"}, queue="ml")

    # then the worker records both, with its own host name
    beats = wait_for(
        lambda: (
            list(Heartbeat.objects.order_by("component"))
            if Heartbeat.objects.count() >= 2
            else None
        ),
        timeout=60,
        what=lambda: f"heartbeats from the worker; its log:\n{celery_worker_process.log()}",
    )
    assert [b.component for b in beats] == ["ml", "worker"]
    assert all(b.hostname.startswith("test-") for b in beats)
    assert {b.metrics["queue"] for b in beats} == {"default", "ml"}
