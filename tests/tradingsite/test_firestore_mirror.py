"""The mirror end to end: state changed through the real services reaches the real emulator,
and an emulator outage delays the mirror without touching trading."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from pytest_django.fixtures import Settings

from doctor.checks import CHECKS
from doctor.models import DoctorSnapshot, Incident
from doctor.services import incident_open
from doctor.snapshots import doctor_report, snapshot_store
from mlinsights.models import Prediction
from mlinsights.registry import artifact_cache_clear
from mlinsights.services import model_train, predictions_score
from risk.models import RiskState
from risk.services import risk_halt
from routing.models import NavPoint, Position, SignalSource
from routing.signal_services import signal_sources_sync
from routing.tasks import executor_run_once
from tests.conftest import wait_for
from tests.firestore_support import FirestoreProject
from tests.mlinsights.markets import bars_store, close_time, market
from tradingsite import guard
from tradingsite.firestore import DrainReport, mirror_compare, outbox_drain, outbox_status
from tradingsite.mirrors import COLLECTION_NAMES
from tradingsite.models import OutboxEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def paper(settings: Settings) -> None:
    """The paper venue with eager signal thresholds, as in the executor's own tests."""
    settings.VENUE = "paper"
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    signal_sources_sync()
    for source in SignalSource.objects.filter(name__in=["momentum", "mean_reversion"]):
        eager = {"threshold": 0.05} if source.name == "momentum" else {"entry_z": 0.2}
        source.params = {**source.params, **eager}
        source.save()


@pytest.fixture
def client_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """A counting spy around the guard's Firestore client factory (the one place a client is
    made, as test_guard checks): every (project, emulator host) asked for, delegated as is."""
    calls: list[tuple[str, str]] = []
    real = guard._firestore_client

    def spy(project: str, emulator_host: str) -> Any:
        calls.append((project, emulator_host))
        return real(project, emulator_host)

    monkeypatch.setattr(guard, "_firestore_client", spy)
    return calls


def drain_until_done(*, start: datetime) -> DrainReport:
    """Drain with a clock that jumps past any back-off, until everything waiting was sent
    (after a restart gRPC may need a moment to reconnect)."""
    clock = iter(start + timedelta(minutes=10 * n) for n in range(10_000))

    def done() -> DrainReport | None:
        report = outbox_drain(now=next(clock))
        return report if report.ok and report.remaining == 0 else None

    result: DrainReport = wait_for(done, timeout=120, interval=0.5, what="the outbox to drain")
    return result


def assert_mirror_equals_database(firestore: FirestoreProject) -> None:
    diff, expected = mirror_compare(client=firestore.client())
    differences = {
        f"{c.name}/{doc_id}": (
            expected[c.name].get(doc_id),
            firestore.documents(c.name).get(doc_id),
        )
        for c in diff.collections
        for doc_id in (*c.missing, *c.stale, *c.extra)
    }
    assert not differences, f"(database, Firestore) per differing document: {differences}"
    assert all(expected[name] for name in ("risk_state", "nav", "positions"))


@pytest.mark.usefixtures("paper")
def test_trading_state_reaches_firestore_equal_to_the_database(
    firestore: FirestoreProject,
) -> None:
    # given state changed through the real services: ticks, a halt, an incident, a snapshot
    for minute in range(3):
        assert executor_run_once(now=T0 + timedelta(minutes=minute)) is not None
    risk_halt(reason="operator test", actor="olive")
    incident_open(
        component="test", code="mirror", severity=Incident.Severity.WARNING, message="hello"
    )
    cheap = tuple(c for c in CHECKS if c.name in {"database", "firestore", "risk_state"})
    snapshot_store(doctor_report(checks=cheap), trigger=DoctorSnapshot.Trigger.COMMAND)

    # when
    drain_until_done(start=T0 + timedelta(minutes=5))

    # then every document equals what the database holds, checked field by field for the
    # core ones against the rows themselves ...
    state = RiskState.objects.get()
    risk = firestore.documents("risk_state")["current"]
    assert (risk["version"], risk["halted"], risk["nav"]) == (state.version, True, str(state.nav))
    assert risk["effective_limits"] == state.effective_limits
    nav = firestore.documents("nav")["latest"]
    newest = NavPoint.objects.order_by("-at", "-id").first()
    assert newest is not None
    assert nav["nav"] == f"{newest.nav:f}"
    positions = firestore.documents("positions")
    assert set(positions) == set(Position.objects.values_list("symbol", flat=True))
    for row in Position.objects.all():
        assert positions[row.symbol]["quantity"] == f"{row.quantity:f}"
    incidents = firestore.documents("incidents")
    assert set(incidents) == {str(pk) for pk in Incident.objects.values_list("pk", flat=True)}
    doctor = firestore.documents("doctor")["latest"]
    assert doctor["snapshot_id"] == DoctorSnapshot.objects.get().pk
    # ... and as a whole through fs_doctor's comparison
    assert_mirror_equals_database(firestore)
    call_command("fs_doctor")  # exits 0 when in sync


@pytest.fixture
def model_dir(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    settings.MODEL_DIR = tmp_path / "models"
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    artifact_cache_clear()
    yield
    artifact_cache_clear()


@pytest.mark.usefixtures("model_dir")
def test_each_models_newest_prediction_per_symbol_is_mirrored(
    firestore: FirestoreProject,
) -> None:
    # given a trained shadow model and bars to score
    frame = market(planted=True, seed=11, n=3_000)
    bars_store(frame)
    version = model_train(
        symbols=["BTCUSDT"],
        start=close_time(frame, 0),
        end=close_time(frame, len(frame) - 1),
        algorithm="logistic_regression",
        horizon=5,
        folds=3,
    )
    newest, older = close_time(frame, len(frame) - 1), close_time(frame, len(frame) - 2)

    # when the newest bar is scored, then (late) an older one
    for as_of in (newest, older):
        assert predictions_score(symbol="BTCUSDT", as_of=as_of, requested_at=as_of)
    drain_until_done(start=T0)

    # then the mirror holds the newest prediction, not the one scored last
    documents = firestore.documents("predictions")
    expected = Prediction.objects.get(model_version=version, as_of=newest)
    assert set(documents) == {f"v{version.version}-BTCUSDT"}
    document = documents[f"v{version.version}-BTCUSDT"]
    assert document["prediction_id"] == expected.pk
    assert document["probability"] == expected.probability
    assert document["close"] == str(expected.close)
    diff, _ = mirror_compare(client=firestore.client(), collections=("predictions",))
    assert diff.in_sync, diff.as_dict()


@pytest.mark.usefixtures("paper")
def test_an_emulator_outage_delays_the_mirror_but_not_trading_and_loses_nothing(
    firestore: FirestoreProject, client_requests: list[tuple[str, str]]
) -> None:
    # given Firestore is down
    firestore.emulator.stop()

    # when the executor trades through the outage
    for minute in range(4):
        assert executor_run_once(now=T0 + timedelta(minutes=minute)) is not None

    # then every tick completed without asking for a Firestore client, and the outbox grew
    assert client_requests == []
    backlog = outbox_status().backlog
    assert backlog >= 4 + 4  # at least a NAV row and a risk state row per tick
    assert set(OutboxEntry.objects.values_list("collection", flat=True)) >= {
        "risk_state",
        "nav",
        "positions",
    }

    # when the drain runs: it fails at once and backs off; of each document's changes only
    # the newest still waits (each payload is the whole document), so nothing is lost
    documents = set(
        OutboxEntry.objects.filter(sent_at__isnull=True).values_list("collection", "doc_id")
    )
    failed = outbox_drain(now=T0 + timedelta(minutes=5))
    assert failed.error.startswith("ServiceUnavailable"), failed
    assert failed.remaining == len(documents) < backlog
    assert outbox_drain(now=T0 + timedelta(minutes=5, seconds=1)).skipped.startswith("backing off")
    assert OutboxEntry.objects.filter(sent_at__isnull=False).count() == backlog - len(documents)
    newest_waiting = {
        (row.collection, row.doc_id): row.pk
        for row in OutboxEntry.objects.filter(sent_at__isnull=True)
    }
    for (collection, doc_id), pk in newest_waiting.items():
        assert pk == max(
            OutboxEntry.objects.filter(collection=collection, doc_id=doc_id).values_list(
                "pk", flat=True
            )
        )

    # when Firestore is back: the backlog drains and the mirror equals the database
    firestore.emulator.start()
    drained = drain_until_done(start=T0 + timedelta(minutes=10))
    assert drained.remaining == 0
    assert OutboxEntry.objects.filter(sent_at__isnull=True).count() == 0
    assert_mirror_equals_database(firestore)
    call_command("fs_doctor")


def test_every_mirrored_collection_is_compared() -> None:
    assert set(COLLECTION_NAMES) == {
        "risk_state",
        "nav",
        "positions",
        "incidents",
        "doctor",
        "predictions",
    }


def test_the_spy_sees_the_drain_ask_for_a_client(
    firestore: FirestoreProject, client_requests: list[tuple[str, str]]
) -> None:
    """The spy of the outage test can fail: a drain does go through it."""
    outbox_drain(now=T0)
    assert client_requests == [(firestore.project, firestore.emulator.host)]
