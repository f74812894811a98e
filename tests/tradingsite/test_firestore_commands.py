"""``fs_doctor`` and ``publish_state`` against the real emulator, and their guard matrix."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from doctor.models import Incident
from doctor.services import incident_open
from risk.models import RiskState
from risk.services import risk_state_load
from tests.firestore_support import FirestoreProject
from tradingsite import guard
from tradingsite.firestore import outbox_drain
from tradingsite.models import OutboxEntry

pytestmark = pytest.mark.django_db

ENVS = ("dev", "test", "staging", "prod")
WRITING_COMMANDS = (("publish_state",), ("fs_doctor", "--repair"))
REAL_PROJECT = "acme-trading"


@pytest.fixture
def state(global_limits: Any) -> None:
    """A risk state and two incidents, each enqueued by its own service."""
    risk_state_load(initial_nav=Decimal("10000"))
    for code in ("one", "two"):
        incident_open(component="test", code=code, severity=Incident.Severity.WARNING, message=code)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_failing(*args: str) -> tuple[str, str]:
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(*args, stdout=out)
    return out.getvalue(), str(failed.value)


# --- fs_doctor ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("state")
def test_fs_doctor_finds_missing_stale_and_extra_documents_and_repairs_the_first_two(
    firestore: FirestoreProject,
) -> None:
    # given a mirror in sync, then damaged: one document changed, one deleted, one added
    assert outbox_drain().remaining == 0
    run("fs_doctor")
    client = firestore.client()
    first, second = (str(pk) for pk in Incident.objects.order_by("pk").values_list("pk", flat=True))
    batch = client.batch()
    batch.set(client.collection("risk_state").document("current"), {"nav": "1"})
    batch.set(client.collection("incidents").document("999999"), {"code": "stray"})
    batch.delete(client.collection("incidents").document(first))
    batch.commit()
    rows_before = OutboxEntry.objects.count()

    # when compared (read-only)
    output, error = run_failing("fs_doctor", "--json")

    # then each difference is reported, non-zero exit, nothing enqueued
    report = json.loads(output)
    assert report["in_sync"] is False
    collections = report["collections"]
    assert collections["risk_state"]["stale"] == ["current"]
    assert collections["incidents"]["missing"] == [first]
    assert collections["incidents"]["extra"] == ["999999"]
    assert collections["incidents"]["stale"] == []
    assert "1 missing, 1 stale, 1 extra" in error
    assert OutboxEntry.objects.count() == rows_before

    # when repaired
    output, error = run_failing("fs_doctor", "--repair")

    # then the database's versions were enqueued (only those two) and written
    assert OutboxEntry.objects.count() == rows_before + 2
    state = RiskState.objects.get()
    assert firestore.documents("risk_state")["current"]["version"] == state.version
    assert set(firestore.documents("incidents")) == {first, second, "999999"}
    # the extra document stays (an operator's decision) and is still reported, with advice
    assert "0 missing, 0 stale, 1 extra" in error
    assert "Firestore console" in output
    assert "repair: 2 document(s) enqueued" in output


@pytest.mark.usefixtures("state")
def test_fs_doctor_exits_zero_when_in_sync(firestore: FirestoreProject) -> None:
    outbox_drain()

    output = run("fs_doctor")

    assert "risk_state" in output
    assert "differs" not in output


@pytest.mark.usefixtures("state")
def test_fs_doctor_says_so_when_firestore_cannot_be_read(firestore: FirestoreProject) -> None:
    firestore.emulator.stop()

    _, error = run_failing("fs_doctor")

    assert "Firestore could not be read" in error


# --- publish_state ---------------------------------------------------------------------------


@pytest.mark.usefixtures("state")
def test_publish_state_writes_every_current_document_to_an_empty_project(
    firestore: FirestoreProject,
) -> None:
    # given rows already marked sent (as if sent to a project that was since wiped)
    OutboxEntry.objects.update(sent_at="2026-01-01T00:00:00Z")

    # when
    output = run("publish_state")

    # then
    assert "risk_state   1 document(s) enqueued" in output
    assert "incidents    2 document(s) enqueued" in output
    assert set(firestore.documents("incidents")) == {
        str(pk) for pk in Incident.objects.values_list("pk", flat=True)
    }
    assert (
        firestore.documents("risk_state")["current"]["version"] == RiskState.objects.get().version
    )
    run("fs_doctor")  # in sync: exits zero


@pytest.mark.parametrize("command", [*WRITING_COMMANDS, ("fs_doctor",)], ids=" ".join)
def test_the_commands_say_clearly_when_firestore_is_not_configured(
    command: tuple[str, ...], settings: Settings, state: None
) -> None:
    settings.FIRESTORE_PROJECT = ""
    rows = OutboxEntry.objects.count()

    _, error = run_failing(*command)

    assert "Firestore is not configured: set FIRESTORE_PROJECT" in error
    assert OutboxEntry.objects.count() == rows


# --- the guard matrix: command x ENV x ALLOW_PROD_WRITES x --allow-prod x target ------------------


class BuiltAClientForARealProject(Exception):
    """Raised by the spy instead of building a client for a real project (no network here)."""


def expected_refusal(
    *, env: str, allow_prod_writes: bool, allow_prod_flag: bool, real_project: bool
) -> tuple[str, ...] | None:
    """SPEC §4 restated: None when allowed, else what the refusal must tell to set.

    The command first (in prod it needs ALLOW_PROD_WRITES=1 and --allow-prod), then the
    Firestore target (a real project only from staging, or prod with ALLOW_PROD_WRITES=1;
    elsewhere the emulator).
    """
    if env == "prod" and not (allow_prod_writes and allow_prod_flag):
        missing = [] if allow_prod_writes else ["ALLOW_PROD_WRITES=1"]
        return (*missing, *([] if allow_prod_flag else ["--allow-prod"]))
    if real_project and env in ("dev", "test"):
        return ("FIRESTORE_EMULATOR_HOST",)
    return None


def _matrix() -> list[Any]:
    return [
        pytest.param(
            command,
            env,
            allow,
            flag,
            real,
            id=(
                f"{' '.join(command)}-ENV={env}-ALLOW_PROD_WRITES={int(allow)}-"
                f"{'with' if flag else 'without'}-allow-prod-{'real' if real else 'emulator'}"
            ),
        )
        for command in WRITING_COMMANDS
        for env in ENVS
        for allow in (False, True)
        for flag in (False, True)
        for real in (False, True)
    ]


def test_the_matrix_covers_both_commands_every_env_switch_and_target() -> None:
    assert len(_matrix()) == 2 * 4 * 2 * 2 * 2 == 64


@pytest.mark.usefixtures("state")
@pytest.mark.parametrize(("command", "env", "allow", "flag", "real"), _matrix())
def test_the_writing_commands_follow_the_guard(
    command: tuple[str, ...],
    env: str,
    allow: bool,
    flag: bool,
    real: bool,
    firestore: FirestoreProject,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given
    settings.ENV = env
    settings.ALLOW_PROD_WRITES = allow
    if real:
        settings.FIRESTORE_PROJECT = REAL_PROJECT
        settings.FIRESTORE_EMULATOR_HOST = ""
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "")
    requested: list[str] = []
    real_factory = guard._firestore_client

    def spy(project: str, emulator_host: str) -> Any:
        requested.append(project)
        if not emulator_host:
            raise BuiltAClientForARealProject(project)
        return real_factory(project, emulator_host)

    monkeypatch.setattr(guard, "_firestore_client", spy)
    args = (*command, *(["--allow-prod"] if flag else []))
    rows = OutboxEntry.objects.count()
    must_name = expected_refusal(
        env=env, allow_prod_writes=allow, allow_prod_flag=flag, real_project=real
    )

    if must_name is not None:
        # then: refused before any side effect, saying what to set
        _, error = run_failing(*args)
        for setting in must_name:
            assert setting in error, f"the refusal should say to set {setting}: {error!r}"
        assert requested == []
        assert OutboxEntry.objects.count() == rows
    elif real:
        # then: the guard hands out the real project's client, asked before anything else
        with pytest.raises(BuiltAClientForARealProject):
            run(*args)
        assert requested == [REAL_PROJECT]
        assert OutboxEntry.objects.count() == rows
    else:
        # then: it runs, against the emulator
        run(*args)
        assert firestore.documents("risk_state")["current"]["version"] == (
            RiskState.objects.get().version
        )
        if command[0] == "publish_state":
            assert OutboxEntry.objects.count() > rows  # everything enqueued again
        else:
            assert OutboxEntry.objects.count() == rows  # changes in flight: only sent


@pytest.mark.usefixtures("state")
def test_a_read_only_fs_doctor_runs_in_prod_without_the_write_switches(
    firestore: FirestoreProject, settings: Settings
) -> None:
    settings.ENV = "prod"
    settings.ALLOW_PROD_WRITES = False
    rows = OutboxEntry.objects.count()

    report = json.loads(run("fs_doctor", "--json"))

    # compared: nothing was sent yet, and all of it waits in the outbox (in flight, not a
    # difference); nothing changed
    assert report["collections"]["risk_state"]["in_flight"] == ["current"]
    assert OutboxEntry.objects.count() == rows
