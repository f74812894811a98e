"""Doctor snapshots: stored, mirrored, pushed; a failing check opens one incident, recovery
resolves it; the commands, the guard on cron_doctor_cache and the JSON endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from doctor import checks
from doctor.checks import CHECK_NAMES, FAIL, OK, WARN, Check, CheckContext, Finding
from doctor.models import DoctorSnapshot, Heartbeat, Incident
from doctor.services import incident_open
from doctor.snapshots import (
    HISTORY_POINTS_MAX,
    confidence_series,
    doctor_report,
    snapshot_store,
    snapshot_take,
)
from tests.conftest import ROOT, child_env, free_port
from tradingsite.models import OutboxEntry

pytestmark = pytest.mark.django_db


def switchable(state: dict[str, str]) -> tuple[Check, ...]:
    def run(_: CheckContext) -> Finding:
        status = state["status"]
        return Finding(status, f"it is {status}", 1.0 if status == OK else 0.0)

    def steady(_: CheckContext) -> Finding:
        return Finding(OK, "fine", 1.0)

    return (Check("flaky", "Flaky part", run, critical=True), Check("steady", "Steady", steady))


def test_a_snapshot_is_stored_mirrored_and_a_red_check_opens_one_incident_until_it_recovers() -> (
    None
):
    state = {"status": FAIL}
    t0 = timezone.now()
    first = snapshot_store(
        doctor_report(now=t0, checks=switchable(state)), trigger=DoctorSnapshot.Trigger.SCHEDULE
    )
    assert first.status == FAIL
    assert first.confidence == 0.0  # the critical check failed
    assert [c["name"] for c in first.checks] == ["flaky", "steady"]
    mirrored = OutboxEntry.objects.filter(collection="doctor", doc_id="latest").latest("id")
    assert mirrored.payload["snapshot_id"] == first.pk
    assert mirrored.payload["status"] == FAIL

    # Still red a minute later: the same incident, seen twice (so alerted once).
    snapshot_store(
        doctor_report(now=t0 + timedelta(minutes=1), checks=switchable(state)),
        trigger=DoctorSnapshot.Trigger.SCHEDULE,
    )
    incident = Incident.objects.get(component="doctor", code="check-flaky")
    assert incident.resolved_at is None
    assert incident.occurrences == 2
    assert incident.severity == Incident.Severity.CRITICAL
    assert "Flaky part: it is fail" in incident.message
    assert not Incident.objects.filter(code="check-steady").exists()

    # Better but not well (warn): still the same open incident, no recovery yet.
    state["status"] = WARN
    snapshot_store(
        doctor_report(now=t0 + timedelta(minutes=2), checks=switchable(state)),
        trigger=DoctorSnapshot.Trigger.SCHEDULE,
    )
    incident.refresh_from_db()
    assert incident.resolved_at is None

    state["status"] = OK
    recovered = snapshot_store(
        doctor_report(now=t0 + timedelta(minutes=3), checks=switchable(state)),
        trigger=DoctorSnapshot.Trigger.SCHEDULE,
    )
    assert recovered.confidence == 1.0
    incident.refresh_from_db()
    assert incident.resolved_at == t0 + timedelta(minutes=3)


def test_checks_that_restate_open_incidents_open_none_of_their_own() -> None:
    incident_open(
        component="venue", code="venue_banned", severity=Incident.Severity.CRITICAL, message="418"
    )
    snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.SCHEDULE)
    by_name = {c["name"]: c for c in snapshot.checks}
    assert by_name["incidents"]["status"] == FAIL
    # The ban alerted once through its own incident; the doctor does not add a second one.
    assert not Incident.objects.filter(component="doctor", code="check-incidents").exists()
    assert not Incident.objects.filter(component="doctor", code="check-reconciliation").exists()


def test_the_confidence_series_is_oldest_first_and_thinned() -> None:
    now = timezone.now()
    count = HISTORY_POINTS_MAX * 2 + 10
    DoctorSnapshot.objects.bulk_create(
        DoctorSnapshot(
            taken_at=now - timedelta(seconds=10 * (count - i)),
            status=OK,
            confidence=(i % 100) / 100,
            checks=[],
        )
        for i in range(count)
    )
    series = confidence_series(hours=24, now=now)
    assert len(series) <= HISTORY_POINTS_MAX
    assert [p["at"] for p in series] == sorted(p["at"] for p in series)
    newest = DoctorSnapshot.objects.order_by("-taken_at").first()
    assert newest is not None
    assert series[-1]["at"] == newest.taken_at.isoformat()
    with pytest.raises(ValueError, match="hours"):
        confidence_series(hours=0)


# --- commands --------------------------------------------------------------------------------


def test_doctor_command_json_shape_and_exit_code() -> None:
    Heartbeat.objects.create(component="beat", created_at=timezone.now())
    out = StringIO()
    call_command("doctor", "--json", "--check", "beat", "--check", "database", stdout=out)
    report = json.loads(out.getvalue())
    assert set(report) == {"taken_at", "status", "confidence", "duration_ms", "checks"}
    assert [c["name"] for c in report["checks"]] == ["database", "beat"]
    for check in report["checks"]:
        assert set(check) == {
            "name",
            "label",
            "status",
            "detail",
            "latency_ms",
            "confidence",
            "critical",
        }
        assert 0 <= check["confidence"] <= 1
    assert report["status"] == OK
    assert DoctorSnapshot.objects.count() == 0  # the command only reads

    Heartbeat.objects.all().delete()
    with pytest.raises(CommandError, match="beat") as failed:
        call_command("doctor", "--check", "beat", stdout=StringIO())
    assert failed.value.returncode == 1


def test_doctor_fail_on_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    Heartbeat.objects.create(component="beat", created_at=timezone.now() - timedelta(seconds=60))
    out = StringIO()
    call_command("doctor", "--check", "beat", stdout=out)  # a warning passes by default
    assert "WARN" in out.getvalue()
    with pytest.raises(CommandError, match="at warn or worse: beat"):
        call_command("doctor", "--check", "beat", "--fail-on", "warn", stdout=StringIO())


def test_doctor_refuses_unknown_checks() -> None:
    with pytest.raises(CommandError, match="unknown check"):
        call_command("doctor", "--check", "nope")
    assert "database" in CHECK_NAMES


def test_doctor_in_a_process_whose_database_is_down_exits_non_zero() -> None:
    """The real command, against a PostgreSQL port nobody listens on."""
    completed = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json", "--check", "database"],
        cwd=ROOT,
        env=child_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    report = json.loads(completed.stdout)
    assert report["checks"][0]["status"] == FAIL
    assert report["confidence"] == 0.0
    assert "database" in completed.stderr


@pytest.mark.parametrize(
    ("env", "allow_writes", "flag", "allowed"),
    [
        ("dev", False, False, True),
        ("test", False, False, True),
        ("staging", False, False, True),
        ("prod", False, False, False),
        ("prod", True, False, False),
        ("prod", False, True, False),
        ("prod", True, True, True),
    ],
)
def test_cron_doctor_cache_is_guarded_in_prod(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    allow_writes: bool,
    flag: bool,
    allowed: bool,
) -> None:
    settings.ENV = env
    settings.ALLOW_PROD_WRITES = allow_writes
    monkeypatch.setattr("doctor.snapshots.CHECKS", checks.CHECKS[:1])  # the database only
    args = ["--allow-prod"] if flag else []
    if allowed:
        out = StringIO()
        call_command("cron_doctor_cache", *args, stdout=out)
        assert DoctorSnapshot.objects.count() == 1
        assert "snapshot #" in out.getvalue()
    else:
        with pytest.raises(CommandError, match="cron_doctor_cache overwrites production state"):
            call_command("cron_doctor_cache", *args)
        assert DoctorSnapshot.objects.count() == 0
        assert OutboxEntry.objects.count() == 0


# --- JSON endpoints -------------------------------------------------------------------------


def test_doctor_endpoints(client: Client, viewer_user: User) -> None:
    assert client.get("/api/v1/doctor/latest/").status_code in {401, 403}
    client.force_login(viewer_user)
    missing = client.get("/api/v1/doctor/latest/")
    assert missing.status_code == 404
    assert "cron_doctor_cache" in missing.json()["detail"]

    snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.API)
    latest = client.get("/api/v1/doctor/latest/").json()
    assert latest["id"] == snapshot.pk
    assert latest["confidence"] == snapshot.confidence
    assert {c["name"] for c in latest["checks"]} == set(CHECK_NAMES)

    series = client.get("/api/v1/doctor/confidence/?hours=2").json()
    assert series["hours"] == 2
    assert series["points"][-1]["confidence"] == snapshot.confidence
    bad = client.get("/api/v1/doctor/confidence/?hours=0")
    assert bad.status_code == 400
    assert "hours" in bad.json()
    incidents = client.get("/api/v1/doctor/incidents/").json()
    assert {(i["component"], i["code"]) for i in incidents} == set(
        Incident.objects.filter(resolved_at__isnull=True).values_list("component", "code")
    )


def test_a_check_that_stays_at_warn_has_its_incident_resolved_after_the_hold() -> None:
    state = {"status": FAIL}
    t0 = timezone.now()
    snapshot_store(
        doctor_report(now=t0, checks=switchable(state)), trigger=DoctorSnapshot.Trigger.SCHEDULE
    )
    state["status"] = WARN
    snapshot_store(
        doctor_report(now=t0 + timedelta(minutes=10), checks=switchable(state)),
        trigger=DoctorSnapshot.Trigger.SCHEDULE,
    )
    incident = Incident.objects.get(component="doctor", code="check-flaky")
    assert incident.resolved_at is None  # within the hold: no flapping alerts
    snapshot_store(
        doctor_report(now=t0 + timedelta(minutes=20), checks=switchable(state)),
        trigger=DoctorSnapshot.Trigger.SCHEDULE,
    )
    incident.refresh_from_db()
    assert incident.resolved_at == t0 + timedelta(minutes=20)


def test_doctor_incidents_no_check_can_resolve_are_resolved() -> None:
    # a check since renamed, and one that no longer opens incidents of its own
    for code in ("check-an-old-name", "check-incidents"):
        incident_open(
            component="doctor", code=code, severity=Incident.Severity.CRITICAL, message=code
        )
    state = {"status": OK}
    snapshot_store(doctor_report(checks=switchable(state)), trigger=DoctorSnapshot.Trigger.SCHEDULE)
    assert not Incident.objects.filter(component="doctor", resolved_at__isnull=True).exists()
