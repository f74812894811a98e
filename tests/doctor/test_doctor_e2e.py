"""The issue's "done when", end to end: a part of the stack stops, the doctor's check turns
red in the cached snapshot, one alert reaches a real HTTP receiver — sent by the cron
watchdog, since the workers that send alerts are the part that stopped — and it stays one
alert while the part stays down."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from doctor.checks import CHECKS, FAIL, OK
from doctor.models import Alert, DoctorSnapshot, Incident
from doctor.snapshots import doctor_report, snapshot_store
from tests.conftest import Process
from tests.doctor.alert_receiver import WEBHOOK_PATH, AlertReceiver, channels_configure

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = tuple(check for check in CHECKS if check.name == "workers")


def snapshot() -> DoctorSnapshot:
    return snapshot_store(doctor_report(checks=WORKERS), trigger=DoctorSnapshot.Trigger.SCHEDULE)


def test_a_stopped_worker_turns_its_check_red_and_alerts_once(
    settings: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with AlertReceiver() as receiver:
        channels_configure(settings, receiver.url, slack=False, telegram=False)
        monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}{WEBHOOK_PATH}")
        worker: Process = request.getfixturevalue("celery_worker_process")

        healthy = snapshot()
        assert healthy.status == OK, healthy.checks
        assert not Incident.objects.filter(component="doctor").exists()

        worker.stop()
        red = snapshot()
        assert red.status == FAIL
        assert red.confidence == 0.0  # the workers check is critical
        assert "no worker answered" in red.checks[0]["detail"]
        incident = Incident.objects.get(component="doctor", code="check-workers")
        (alert,) = Alert.objects.filter(incident=incident)
        # No worker is left to run the alert's task: the cron watchdog sends it.
        monkeypatch.setattr("doctor.snapshots.CHECKS", WORKERS)  # the cron run, narrowed
        out = StringIO()
        call_command("cron_doctor_cache", stdout=out)
        alert.refresh_from_db()
        assert alert.status == Alert.Status.SENT, out.getvalue()
        (received,) = receiver.received
        assert received.body["code"] == "check-workers"
        assert received.body["event"] == "opened"

        still_red = snapshot()
        assert still_red.status == FAIL
        assert Alert.objects.count() == 1  # the same incident, seen again: no second alert
        incident.refresh_from_db()
        assert incident.occurrences == 3  # the schedule's two runs and the cron's
