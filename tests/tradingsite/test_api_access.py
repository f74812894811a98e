"""The API's roles over every endpoint, its one error format, the operations (kill switch,
un-halt, flatten, doctor run with its task status) and ``api_token``.

The endpoint list is read from the URL configuration, so an endpoint added later is in the
permission matrix without anyone remembering to add it.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import throttling
from rest_framework.authtoken.models import Token

from doctor.models import DoctorSnapshot, Incident
from risk.models import RiskLimit, RiskState
from risk.services import risk_halt, risk_state_load
from tests.conftest import Process, wait_for

pytestmark = pytest.mark.django_db

SAMPLE_KWARGS = {
    "window": "24h",
    "version": "1",
    "task_id": "no-such-task",
    "target": "global",
    "run_id": "1",
}
DENIED = {401, 403}


def api_endpoints() -> list[tuple[str, tuple[str, ...]]]:
    """(path, methods) of every view under /api/v1/."""
    found: list[tuple[str, tuple[str, ...]]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                route = prefix + str(entry.pattern)
                for name, value in SAMPLE_KWARGS.items():
                    route = route.replace(f"<str:{name}>", value).replace(f"<int:{name}>", value)
                view_class = getattr(entry.callback, "view_class", None)
                methods = tuple(
                    m
                    for m in ("get", "post", "patch", "delete")
                    if view_class is not None and hasattr(view_class, m)
                )
                found.append(("/" + route, methods))

    api = next(
        e
        for e in get_resolver().url_patterns
        if isinstance(e, URLResolver) and str(e.pattern) == "api/v1/"
    )
    walk(api.url_patterns, "api/v1/")
    return found


ENDPOINTS = api_endpoints()
READS = [path for path, methods in ENDPOINTS if "get" in methods]
WRITES = [(path, method) for path, methods in ENDPOINTS for method in methods if method != "get"]


def test_the_matrix_sees_the_endpoints() -> None:
    assert ("/api/v1/risk/kill-switch/", "post") in WRITES
    assert ("/api/v1/risk/limits/global/", "patch") in WRITES
    assert "/api/v1/doctor/latest/" in READS
    assert len(READS) >= 20
    assert all("<" not in path for path, _ in ENDPOINTS), ENDPOINTS


@pytest.fixture
def nobody(django_user_model: type[User]) -> User:
    """Logged in, but in neither role."""
    return django_user_model.objects.create_user(username="nora", password="a-long-secret-3")


@pytest.mark.usefixtures("global_limits")
@pytest.mark.parametrize("path", READS)
def test_reading_needs_the_viewer_role(
    path: str, client: Client, nobody: User, viewer_user: User, operator_user: User
) -> None:
    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Token"
    client.force_login(nobody)
    assert client.get(path).status_code == 403
    for user in (viewer_user, operator_user):
        client.force_login(user)
        answer = client.get(path)
        assert answer.status_code in {200, 404}, (path, answer.status_code, answer.content[:200])


@pytest.mark.usefixtures("global_limits")
@pytest.mark.parametrize(("path", "method"), WRITES)
def test_writing_needs_the_operator_role(
    path: str, method: str, client: Client, nobody: User, viewer_user: User
) -> None:
    limits_before = list(RiskLimit.objects.values())
    send = getattr(client, method)
    assert send(path, {}, content_type="application/json").status_code in DENIED
    body = {"reason": "x", "on": True, "max_leverage": "1"}
    for user in (nobody, viewer_user):
        client.force_login(user)
        refused = send(path, body, content_type="application/json")
        assert refused.status_code == 403, (path, refused.status_code)
        assert "operator role" in refused.json()["detail"]
    assert list(RiskLimit.objects.values()) == limits_before


# --- operations ----------------------------------------------------------------------------


@pytest.fixture
def operator_token(operator_user: User) -> str:
    key: str = Token.objects.create(user=operator_user).key
    return key


def token_client(key: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.mark.usefixtures("global_limits")
def test_the_kill_switch_through_the_api_with_a_token(operator_token: str) -> None:
    api = token_client(operator_token)

    answer = api.post(
        "/api/v1/risk/kill-switch/",
        {"on": True, "reason": "drill"},
        content_type="application/json",
    )

    assert answer.status_code == 200, answer.content
    assert answer.json() == {"detail": "Kill switch on.", "kill_switch": True}
    assert RiskLimit.objects.get(symbol="").kill_switch is True
    assert Incident.objects.filter(code="kill_switch", resolved_at__isnull=True).exists()
    log = LogEntry.objects.latest("action_time")
    assert "kill switch on from the API: drill" in log.change_message
    assert api.get("/api/v1/status/").json()["kill_switch"] is True


@pytest.mark.usefixtures("global_limits")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"on": True}, "reason"),
        ({"on": True, "reason": "   "}, "reason"),
        ({"on": "maybe", "reason": "x"}, "on"),
        ({"reason": "x"}, "on"),
        ({"on": True, "reason": "x" * 501}, "reason"),
    ],
)
def test_bad_kill_switch_input_is_a_400_with_field_messages_and_changes_nothing(
    operator_token: str, body: dict[str, Any], field: str
) -> None:
    before = list(RiskLimit.objects.values())
    answer = token_client(operator_token).post(
        "/api/v1/risk/kill-switch/", body, content_type="application/json"
    )
    assert answer.status_code == 400
    assert field in answer.json()
    assert list(RiskLimit.objects.values()) == before
    assert not LogEntry.objects.exists()


@pytest.mark.usefixtures("global_limits")
def test_malformed_json_is_a_400(operator_token: str) -> None:
    answer = token_client(operator_token).post(
        "/api/v1/risk/kill-switch/", "{not json", content_type="application/json"
    )
    assert answer.status_code == 400
    assert "JSON parse error" in answer.json()["detail"]


@pytest.mark.usefixtures("global_limits")
def test_unhalting_an_account_that_is_not_halted_is_a_409(operator_token: str) -> None:
    from decimal import Decimal

    risk_state_load(initial_nav=Decimal("10000"))
    api = token_client(operator_token)
    version = RiskState.objects.get().version

    conflict = api.post("/api/v1/risk/unhalt/", {"reason": "go"}, content_type="application/json")

    assert conflict.status_code == 409
    assert conflict.json() == {"detail": "trading is not halted"}
    assert RiskState.objects.get().version == version

    risk_halt(reason="drill", actor="test")
    lifted = api.post("/api/v1/risk/unhalt/", {"reason": "go"}, content_type="application/json")
    assert lifted.status_code == 200
    assert lifted.json()["halted"] is False
    assert RiskState.objects.get().halted is False


@pytest.mark.usefixtures("global_limits")
def test_flatten_is_queued_with_a_task_to_poll(operator_token: str) -> None:
    api = token_client(operator_token)
    answer = api.post("/api/v1/flatten/", {"reason": "end of day"}, content_type="application/json")
    assert answer.status_code == 202
    task_id = answer.json()["task_id"]
    assert answer.json()["status_url"] == f"/api/v1/tasks/{task_id}/"
    # No worker runs in this test: the task waits, queued.
    assert api.get(f"/api/v1/tasks/{task_id}/").json() == {"task_id": task_id, "state": "PENDING"}


@pytest.mark.django_db(transaction=True)
def test_a_doctor_run_through_the_api_finishes_on_the_worker(
    operator_user: User, celery_worker_process: Process
) -> None:
    api = token_client(Token.objects.create(user=operator_user).key)
    answer = api.post("/api/v1/doctor/run/")
    assert answer.status_code == 202
    status_url = answer.json()["status_url"]

    done = wait_for(
        lambda: (body := api.get(status_url).json())["state"] == "SUCCESS" and body,
        timeout=60,
        what=lambda: f"the doctor run; worker log:\n{celery_worker_process.log()}",
    )
    snapshot = DoctorSnapshot.objects.get(pk=done["result"]["snapshot"])
    assert snapshot.trigger == DoctorSnapshot.Trigger.API
    assert done["result"]["confidence"] == snapshot.confidence


def test_throttled_requests_get_429_with_retry_after(
    operator_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    monkeypatch.setattr(
        throttling.SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/minute", "anon": "2/minute"}
    )
    cache.clear()
    api = token_client(operator_token)
    try:
        codes = [api.get("/api/v1/heartbeats/latest/").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        throttled = api.get("/api/v1/heartbeats/latest/")
        assert throttled.status_code == 429
        assert int(throttled["Retry-After"]) > 0
        assert "throttled" in throttled.json()["detail"]
    finally:
        cache.clear()


# --- api_token -----------------------------------------------------------------------------


def test_api_token_creates_once_and_rotates(operator_user: User, viewer_user: User) -> None:
    out = StringIO()
    call_command("api_token", "--user", "vera", stdout=out, stderr=StringIO())
    first = out.getvalue().strip()
    assert Token.objects.get(user=viewer_user).key == first
    assert token_client(first).get("/api/v1/status/").status_code in {200, 404}

    with pytest.raises(CommandError, match="already has a token"):
        call_command("api_token", "--user", "vera", stdout=StringIO(), stderr=StringIO())

    out = StringIO()
    call_command("api_token", "--user", "vera", "--rotate", stdout=out, stderr=StringIO())
    second = out.getvalue().strip()
    assert second != first
    assert token_client(first).get("/api/v1/status/").status_code == 401  # the old one stops
    # A viewer's token reads but cannot write.
    assert (
        token_client(second)
        .post(
            "/api/v1/risk/kill-switch/",
            {"on": True, "reason": "x"},
            content_type="application/json",
        )
        .status_code
        == 403
    )

    out = StringIO()
    call_command("api_token", "--user", "vera", "--revoke", stdout=out)
    assert "revoked" in out.getvalue()
    assert token_client(second).get("/api/v1/status/").status_code == 401
    with pytest.raises(CommandError, match="has no token"):
        call_command("api_token", "--user", "vera", "--revoke")


def test_api_token_refuses_unknown_users_and_users_without_a_role(nobody: User) -> None:
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("api_token", "--user", "ghost")
    with pytest.raises(CommandError, match="has no role"):
        call_command("api_token", "--user", "nora")
    assert not Token.objects.exists()
    nobody.groups.add(Group.objects.get_or_create(name="viewer")[0])
    call_command("api_token", "--user", "nora", stdout=StringIO(), stderr=StringIO())
    assert Token.objects.filter(user=nobody).exists()


# --- signals and models --------------------------------------------------------------------


def test_an_external_signal_is_submitted(operator_token: str, settings: Any) -> None:
    from routing.models import Signal

    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    body = {"symbol": "BTCUSDT", "side": "BUY", "strength": "0.25", "source": "my_model"}
    answer = token_client(operator_token).post(
        "/api/v1/signals/", body, content_type="application/json"
    )
    assert answer.status_code == 201, answer.content
    signal = Signal.objects.get(pk=answer.json()["id"])
    assert (signal.symbol, signal.side, signal.source, signal.status) == (
        "BTCUSDT",
        "BUY",
        "my_model",
        Signal.Status.NEW,
    )
    assert str(signal.strength) == "0.25000000"
    assert answer.json()["strength"] == "0.25000000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"symbol": "DOGEUSDT"}, "symbol"),
        ({"side": "HOLD"}, "side"),
        ({"strength": "1.5"}, "strength"),
        ({"strength": "-0.1"}, "strength"),
        ({"strength": "NaN"}, "strength"),
        ({"strength": "1e400"}, "strength"),
        ({"source": "momentum"}, "source"),
        ({"source": "has space"}, "source"),
    ],
)
def test_a_bad_signal_is_a_400_naming_the_field_and_nothing_is_recorded(
    operator_token: str, settings: Any, change: dict[str, str], field: str
) -> None:
    from routing.models import Signal

    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    body = {"symbol": "BTCUSDT", "side": "BUY", "strength": "0.5", "source": "my_model", **change}
    answer = token_client(operator_token).post(
        "/api/v1/signals/", body, content_type="application/json"
    )
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not Signal.objects.exists()


def test_promoting_a_model_that_does_not_pass_the_rule_is_a_409(operator_token: str) -> None:
    from django.utils import timezone

    from mlinsights.models import ModelVersion

    api = token_client(operator_token)
    assert api.post("/api/v1/ml/models/7/promote/").status_code == 404
    ModelVersion.objects.create(
        version=7,
        algorithm="logistic_regression",
        horizon_bars=15,
        symbols=["BTCUSDT"],
        features=["ret_1"],
        train_start=timezone.now(),
        train_end=timezone.now(),
        rows=1000,
        metrics={},
        created_at=timezone.now(),
        artifact="v7.joblib",
        artifact_sha256="0" * 64,
    )
    refused = api.post("/api/v1/ml/models/7/promote/")
    assert refused.status_code == 409
    assert refused.json()["detail"]
    assert ModelVersion.objects.get(version=7).state == ModelVersion.State.SHADOW


def test_training_is_queued_with_a_task_to_poll(operator_token: str) -> None:
    api = token_client(operator_token)
    answer = api.post("/api/v1/ml/train/")
    assert answer.status_code == 202
    task_id = answer.json()["task_id"]
    assert api.get(f"/api/v1/tasks/{task_id}/").json()["state"] == "PENDING"


# --- limits --------------------------------------------------------------------------------


@pytest.mark.usefixtures("global_limits")
def test_limits_are_written_with_who_and_why(operator_token: str, settings: Any) -> None:
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    api = token_client(operator_token)

    changed = api.patch(
        "/api/v1/risk/limits/global/",
        {"max_leverage": "2.5", "reason": "quieter week"},
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["limits"]["max_leverage"] == "2.50000000"
    row = RiskLimit.objects.get(symbol="")
    assert str(row.max_leverage) == "2.50000000"
    assert row.history.first().history_change_reason == "olive (API): quieter week"

    override = api.patch(
        "/api/v1/risk/limits/ETHUSDT/",
        {"max_order_notional": "500", "reason": "thin book"},
        content_type="application/json",
    )
    assert override.status_code == 201
    assert str(RiskLimit.objects.get(symbol="ETHUSDT").max_order_notional) == "500.00000000"


@pytest.mark.usefixtures("global_limits")
@pytest.mark.parametrize(
    ("target", "body", "field"),
    [
        ("global", {"max_leverage": "-1"}, "max_leverage"),
        ("global", {"max_leverage": "NaN"}, "max_leverage"),
        ("global", {"max_leverage": "1e400"}, "max_leverage"),
        ("global", {"max_drawdown": "1.5"}, "max_drawdown"),
        ("global", {"autotune_floor": "2"}, "autotune_floor"),
        ("global", {"max_leverage": None}, "max_leverage"),
        ("global", {"max_open_orders": -3}, "max_open_orders"),
        ("global", {"kill_switch": True}, "kill_switch"),
        ("global", {"max_order_notional": "99999999999"}, "max_order_notional"),
        ("global", {}, "non_field_errors"),
        ("BTCUSDT", {"max_leverage": "2"}, "max_leverage"),
        ("DOGEUSDT", {"max_order_notional": "10"}, "symbol"),
    ],
)
def test_bad_limits_are_a_400_naming_the_field_and_change_nothing(
    operator_token: str, settings: Any, target: str, body: dict[str, Any], field: str
) -> None:
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    before = list(RiskLimit.objects.values())
    history = RiskLimit.history.count()
    answer = token_client(operator_token).patch(
        f"/api/v1/risk/limits/{target}/",
        {**body, "reason": "test"},
        content_type="application/json",
    )
    assert answer.status_code == 400, answer.content
    assert field in answer.json(), answer.json()
    assert list(RiskLimit.objects.values()) == before
    assert RiskLimit.history.count() == history


# --- doctor lists and CSRF ------------------------------------------------------------------


def test_doctor_snapshots_and_incidents_are_listed(viewer_user: User) -> None:
    from django.utils import timezone

    from doctor.services import incident_open, incident_resolve

    for n in range(3):
        DoctorSnapshot.objects.create(
            taken_at=timezone.now(), status="ok", confidence=n / 2, checks=[]
        )
    incident_open(component="venue", code="a", severity=Incident.Severity.WARNING, message="a")
    incident_open(component="risk", code="b", severity=Incident.Severity.CRITICAL, message="b")
    incident_resolve(component="venue", code="a")
    api = Client()
    api.force_login(viewer_user)

    snapshots = api.get("/api/v1/doctor/snapshots/?page_size=2").json()
    assert [s["confidence"] for s in snapshots["results"]] == [1.0, 0.5]
    assert snapshots["next"]
    open_only = api.get("/api/v1/doctor/incidents/all/?open=true").json()["results"]
    assert [(i["component"], i["code"]) for i in open_only] == [("risk", "b")]
    everything = api.get("/api/v1/doctor/incidents/all/").json()["results"]
    assert {i["code"] for i in everything} == {"a", "b"}


@pytest.mark.usefixtures("global_limits")
def test_session_writes_need_the_csrf_token(operator_user: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator_user)
    refused = browser.post(
        "/api/v1/risk/kill-switch/", {"on": True, "reason": "x"}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert RiskLimit.objects.get(symbol="").kill_switch is False
    # A token is not a cookie: no CSRF token needed (and none possible to forge).
    key = Token.objects.create(user=operator_user).key
    scripted = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {key}")
    body = {"on": True, "reason": "x"}
    allowed = scripted.post("/api/v1/risk/kill-switch/", body, content_type="application/json")
    assert allowed.status_code == 200
