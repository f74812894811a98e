from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from risk.models import RiskLimit, RiskSnapshot, RiskState
from risk.services import risk_halt, risk_state_load

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]


@pytest.fixture
def operator_client(client: Client, django_user_model: type[User]) -> Client:
    user = django_user_model.objects.create_user("ops", password="a-long-secret-9", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client: Client, django_user_model: type[User]) -> Client:
    user = django_user_model.objects.create_user("look", password="a-long-secret-8", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client.force_login(user)
    return client


def limit_form(row: RiskLimit, **changes: object) -> dict[str, object]:
    fields = [
        "symbol",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        "max_leverage",
        "max_daily_loss",
        "max_drawdown",
        "max_open_orders",
        "loss_streak_limit",
        "loss_streak_cooldown_seconds",
        "min_liquidation_distance",
        "stop_distance",
        "autotune_floor",
    ]
    data = {name: getattr(row, name) for name in fields}
    data.update(changes)
    return {key: "" if value is None else value for key, value in data.items()}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"autotune_floor": "1.5"}, "less than or equal to 1"),
        ({"autotune_floor": "0"}, "greater than or equal to"),
        ({"max_order_notional": "-5"}, "greater than or equal to"),
        ({"max_order_notional": "9000", "max_position_notional": "5000"}, "max_position_notional"),
        ({"max_drawdown": ""}, "must set every limit"),
        ({"max_leverage": "abc"}, "Enter a number"),
    ],
)
def test_invalid_limits_are_refused_with_a_message_and_nothing_is_saved(
    operator_client: Client, global_limits: RiskLimit, changes: dict[str, str], message: str
) -> None:
    before = list(RiskLimit.objects.values())
    response = operator_client.post(
        f"/admin/risk/risklimit/{global_limits.pk}/change/", limit_form(global_limits, **changes)
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert list(RiskLimit.objects.values()) == before


def test_a_valid_change_is_saved_with_who_changed_what(
    operator_client: Client, global_limits: RiskLimit
) -> None:
    response = operator_client.post(
        f"/admin/risk/risklimit/{global_limits.pk}/change/",
        limit_form(global_limits, max_order_notional="750"),
    )
    assert response.status_code == 302
    global_limits.refresh_from_db()
    assert global_limits.max_order_notional == Decimal("750")
    newest, previous = global_limits.history.all()[:2]
    assert newest.history_user.username == "ops"
    assert (previous.max_order_notional, newest.max_order_notional) == (
        Decimal("1000"),
        Decimal("750"),
    )


def test_a_symbol_override_cannot_set_account_wide_limits(operator_client: Client) -> None:
    response = operator_client.post(
        "/admin/risk/risklimit/add/",
        {"symbol": "BTCUSDT", "max_order_notional": "500", "max_drawdown": "0.2"},
    )
    assert response.status_code == 200
    assert "global row only" in response.content.decode()
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()


def test_a_viewer_cannot_change_limits(viewer_client: Client, global_limits: RiskLimit) -> None:
    response = viewer_client.post(
        f"/admin/risk/risklimit/{global_limits.pk}/change/",
        limit_form(global_limits, max_order_notional="1"),
    )
    assert response.status_code == 403
    global_limits.refresh_from_db()
    assert global_limits.max_order_notional == Decimal("1000")


def test_unhalting_asks_for_a_reason_then_records_it(operator_client: Client) -> None:
    risk_state_load(initial_nav=Decimal("10000"))
    row = risk_halt(reason="test halt", actor="someone")
    url = "/admin/risk/riskstate/"

    confirm_page = operator_client.post(url, {"action": "unhalt", "_selected_action": [row.pk]})
    assert confirm_page.status_code == 200
    assert "Reason (required" in confirm_page.content.decode()
    row.refresh_from_db()
    assert row.halted

    without_reason = operator_client.post(
        url, {"action": "unhalt", "_selected_action": [row.pk], "confirm": "yes", "reason": " "}
    )
    assert "A reason is required" in without_reason.content.decode()
    assert RiskState.objects.get().halted

    operator_client.post(
        url,
        {"action": "unhalt", "_selected_action": [row.pk], "confirm": "yes", "reason": "checked"},
    )
    assert not RiskState.objects.get().halted
    assert RiskSnapshot.objects.filter(actor="ops", note="checked", reason="manual").exists()


def test_a_viewer_cannot_run_the_kill_switch_action(
    viewer_client: Client, global_limits: RiskLimit
) -> None:
    viewer_client.post(
        "/admin/risk/risklimit/",
        {
            "action": "kill_switch_on",
            "_selected_action": [global_limits.pk],
            "confirm": "yes",
            "reason": "x",
        },
    )
    global_limits.refresh_from_db()
    assert not global_limits.kill_switch


def test_an_operator_switches_the_kill_switch_with_a_reason(
    operator_client: Client, global_limits: RiskLimit
) -> None:
    operator_client.post(
        "/admin/risk/risklimit/",
        {
            "action": "kill_switch_on",
            "_selected_action": [global_limits.pk],
            "confirm": "yes",
            "reason": "exchange maintenance",
        },
    )
    global_limits.refresh_from_db()
    assert global_limits.kill_switch
    assert global_limits.history.first().history_change_reason == "ops: exchange maintenance"


def test_an_operator_flattens_from_the_admin_with_a_reason(
    operator_client: Client, global_limits: RiskLimit
) -> None:
    from django.contrib.admin.models import LogEntry

    url = "/admin/risk/risklimit/"
    asked = operator_client.post(url, {"action": "flatten", "_selected_action": [global_limits.pk]})
    assert "Reason (required" in asked.content.decode()
    assert not LogEntry.objects.exists()  # nothing until confirmed

    done = operator_client.post(
        url,
        {
            "action": "flatten",
            "_selected_action": [global_limits.pk],
            "confirm": "yes",
            "reason": "end of the strategy",
        },
        follow=True,
    )
    assert "Flatten queued (task " in done.content.decode()
    log = LogEntry.objects.get()
    assert log.change_message == "flatten requested from the admin: end of the strategy"


def test_an_operator_runs_the_doctor_from_the_admin(operator_client: Client) -> None:
    from django.contrib.admin.models import LogEntry
    from django.utils import timezone

    from doctor.models import DoctorSnapshot

    snapshot = DoctorSnapshot.objects.create(
        taken_at=timezone.now(), status="ok", confidence=1.0, checks=[]
    )
    done = operator_client.post(
        "/admin/doctor/doctorsnapshot/",
        {
            "action": "doctor_run",
            "_selected_action": [snapshot.pk],
            "confirm": "yes",
            "reason": "after the deploy",
        },
        follow=True,
    )
    assert "Doctor run queued (task " in done.content.decode()
    assert "after the deploy" in LogEntry.objects.get().change_message
