from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from doctor.models import Incident
from doctor.services import incident_open, incident_resolve

pytestmark = pytest.mark.django_db


def test_reporting_the_same_problem_again_counts_it_on_the_open_incident() -> None:
    first = incident_open(
        component="venue", code="http_418", severity=Incident.Severity.CRITICAL, message="banned"
    )
    again = incident_open(
        component="venue",
        code="http_418",
        severity=Incident.Severity.CRITICAL,
        message="banned until 12:00",
    )

    assert again.pk == first.pk
    assert Incident.objects.count() == 1
    again.refresh_from_db()
    assert (again.occurrences, again.message) == (2, "banned until 12:00")


def test_a_resolved_incident_is_not_reopened_but_a_new_one_is_opened() -> None:
    first = incident_open(
        component="venue", code="http_418", severity=Incident.Severity.CRITICAL, message="banned"
    )
    assert incident_resolve(component="venue", code="http_418") == 1
    second = incident_open(
        component="venue", code="http_418", severity=Incident.Severity.CRITICAL, message="again"
    )

    assert second.pk != first.pk
    first.refresh_from_db()
    assert first.resolved_at is not None
    assert second.resolved_at is None


def test_resolving_when_nothing_is_open_changes_nothing() -> None:
    assert incident_resolve(component="venue", code="none") == 0


def test_the_database_refuses_two_open_incidents_for_the_same_problem() -> None:
    now = timezone.now()
    Incident.objects.create(
        component="db", code="x", severity="warning", message="m", opened_at=now, last_seen_at=now
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(
            component="db",
            code="x",
            severity="warning",
            message="m",
            opened_at=now,
            last_seen_at=now,
        )


def test_the_database_refuses_an_incident_resolved_before_it_opened() -> None:
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(
            component="db",
            code="y",
            severity="info",
            message="m",
            opened_at=now,
            last_seen_at=now,
            resolved_at=now - timedelta(seconds=1),
        )
