"""Alerts: recorded with the incident, sent after the commit to a real local HTTP receiver,
retried, rate-limited and never sent twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import Retry
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from doctor.alerts import (
    ALERT_MAX_ATTEMPTS,
    Delivery,
    DeliveryOutcome,
    alert_deliver,
    alert_text,
    alerts_deliver_due,
    alerts_resend,
    alerts_status,
    alerts_sweep,
    duration_text,
)
from doctor.models import Alert, Incident
from doctor.services import incident_open, incident_resolve
from doctor.tasks import alert_send_task
from tests.conftest import Process, free_port, wait_for
from tests.doctor.alert_receiver import (
    SLACK_PATH,
    TELEGRAM_CHAT_ID,
    TELEGRAM_TOKEN,
    WEBHOOK_PATH,
    AlertReceiver,
    channels_configure,
    rate_limits_reset,
)
from tradingsite.redisconn import redis_client, redis_key

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    rate_limits_reset()


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as running:
        yield running


@pytest.fixture
def all_channels(receiver: AlertReceiver, settings: Any) -> AlertReceiver:
    channels_configure(settings, receiver.url)
    return receiver


@pytest.fixture
def webhook_only(receiver: AlertReceiver, settings: Any) -> AlertReceiver:
    channels_configure(settings, receiver.url, slack=False, telegram=False)
    return receiver


def halt_incident(*, at: datetime | None = None, severity: str = "critical") -> Incident:
    return incident_open(
        component="risk",
        code="halted",
        severity=Incident.Severity(severity),
        message="trading halted: max_drawdown 10.2 % > 10 %",
        at=at,
    )


def send_all(alerts: Any) -> list[str]:
    """Run the task for each alert once, as a worker would (synchronously)."""
    return [alert_send_task.apply(args=(alert.pk,)).state for alert in alerts]


class TestAlertText:
    def test_an_opening_says_how_bad_what_and_since_when(self) -> None:
        text = alert_text(
            event=Alert.Event.OPENED,
            severity="critical",
            component="risk",
            code="halted",
            message="trading halted: drawdown",
            opened_at=T0,
            env="prod",
        )

        assert text == (
            "[prod] CRITICAL risk/halted: trading halted: drawdown\nsince 2026-03-02 12:00:00 UTC"
        )

    def test_a_recovery_says_how_long_it_lasted(self) -> None:
        text = alert_text(
            event=Alert.Event.RECOVERED,
            severity="critical",
            component="venue",
            code="venue_banned",
            message="venue ban (HTTP 418)",
            opened_at=T0,
            resolved_at=T0 + timedelta(hours=1, minutes=2, seconds=3),
            occurrences=3,
        )

        assert text.startswith("RECOVERED venue/venue_banned: venue ban (HTTP 418)\n")
        assert "lasted 1h 02m, seen 3 times" in text
        assert "to 2026-03-02 13:02:03 UTC" in text

    @pytest.mark.parametrize(
        ("seconds", "expected"),
        [(0, "0s"), (59, "59s"), (61, "1m 01s"), (3600, "1h 00m"), (90061, "1d 01h")],
    )
    def test_durations_read_in_the_unit_that_matters(self, seconds: int, expected: str) -> None:
        assert duration_text(seconds) == expected


@pytest.mark.django_db
class TestQueueing:
    def test_an_opening_records_one_pending_alert_per_channel_and_sends_after_commit(
        self, all_channels: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        with django_capture_on_commit_callbacks() as callbacks:
            incident = halt_incident()

        alerts = Alert.objects.filter(incident=incident).order_by("channel")
        assert [(a.channel, a.event, a.status) for a in alerts] == [
            ("slack", "opened", "pending"),
            ("telegram", "opened", "pending"),
            ("webhook", "opened", "pending"),
        ]
        assert len(callbacks) == 1  # the delivery is queued only once the incident is committed
        assert all_channels.received == []  # nothing is sent inside the transaction
        assert all("CRITICAL risk/halted" in alert.text for alert in alerts)

    def test_more_occurrences_of_an_open_incident_alert_no_one_again(
        self, all_channels: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        halt_incident()
        with django_capture_on_commit_callbacks() as callbacks:
            again = halt_incident()
            halt_incident()

        again.refresh_from_db()
        assert again.occurrences == 3
        assert Alert.objects.count() == 3
        assert callbacks == []

    def test_a_recovery_alerts_every_channel_told_of_the_opening(
        self, all_channels: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        incident = halt_incident(at=T0)
        with django_capture_on_commit_callbacks() as callbacks:
            incident_resolve(component="risk", code="halted", at=T0 + timedelta(minutes=5))

        recovered = Alert.objects.filter(incident=incident, event=Alert.Event.RECOVERED)
        assert sorted(recovered.values_list("channel", flat=True)) == [
            "slack",
            "telegram",
            "webhook",
        ]
        assert len(callbacks) == 1
        assert all("lasted 5m 00s" in alert.text for alert in recovered)

    def test_without_a_configured_channel_nothing_is_recorded(
        self, settings: Any, django_capture_on_commit_callbacks: Any
    ) -> None:
        channels_configure(
            settings, "http://127.0.0.1:9", webhook=False, slack=False, telegram=False
        )
        with django_capture_on_commit_callbacks() as callbacks:
            halt_incident()
            incident_resolve(component="risk", code="halted")

        assert Alert.objects.count() == 0
        assert callbacks == []

    def test_an_info_incident_alerts_no_one(self, all_channels: AlertReceiver) -> None:
        halt_incident(severity="info")
        incident_resolve(component="risk", code="halted")

        assert Alert.objects.count() == 0

    def test_a_rolled_back_incident_leaves_no_alert_and_queues_nothing(
        self, all_channels: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        def open_then_fail() -> None:
            with transaction.atomic():
                halt_incident()
                raise RuntimeError("the caller's transaction fails")

        with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError):
            open_then_fail()

        assert Alert.objects.count() == 0
        assert callbacks == []


@pytest.mark.django_db
class TestPayloads:
    def test_each_channel_gets_its_own_request_shape(self, all_channels: AlertReceiver) -> None:
        incident = halt_incident(at=T0)
        incident.message = "drawdown <10.2 %> & falling"  # Slack's control characters
        incident.save()
        alerts = Alert.objects.filter(incident=incident)
        Alert.objects.filter(incident=incident).update(text="CRITICAL <risk> & co")

        assert send_all(alerts) == ["SUCCESS"] * 3

        by_path = {request.path: request for request in all_channels.received}
        assert set(by_path) == {WEBHOOK_PATH, SLACK_PATH, f"/bot{TELEGRAM_TOKEN}/sendMessage"}
        webhook = by_path[WEBHOOK_PATH].body
        assert webhook == {
            "alert_id": alerts.get(channel="webhook").pk,
            "event": "opened",
            "severity": "critical",
            "component": "risk",
            "code": "halted",
            "message": "drawdown <10.2 %> & falling",
            "incident_id": incident.pk,
            "occurrences": 1,
            "opened_at": "2026-03-02T12:00:00+00:00",
            "resolved_at": None,
            "env": "test",
            "text": "CRITICAL <risk> & co",
        }
        assert by_path[SLACK_PATH].body == {"text": "CRITICAL &lt;risk&gt; &amp; co"}
        telegram = by_path[f"/bot{TELEGRAM_TOKEN}/sendMessage"].body
        assert telegram["chat_id"] == TELEGRAM_CHAT_ID
        assert telegram["text"] == "CRITICAL <risk> & co"
        assert all(
            request.headers["Content-Type"] == "application/json"
            for request in all_channels.received
        )

    def test_a_recovery_payload_carries_when_it_was_resolved(
        self, webhook_only: AlertReceiver
    ) -> None:
        incident = halt_incident(at=T0)
        incident_resolve(component="risk", code="halted", at=T0 + timedelta(seconds=42))

        send_all(Alert.objects.filter(event=Alert.Event.RECOVERED))

        (request,) = webhook_only.received
        assert request.body["event"] == "recovered"
        assert request.body["incident_id"] == incident.pk
        assert request.body["resolved_at"] == "2026-03-02T12:00:42+00:00"
        assert "lasted 42s" in request.body["text"]


@pytest.mark.django_db
class TestDelivery:
    def test_a_500_is_retried_and_the_next_attempt_sends_it(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(500, body="upstream down")

        # run eagerly, a retry runs at once instead of after its back-off
        result = alert_send_task.apply(args=(alert.pk,))

        alert.refresh_from_db()
        assert (result.state, result.result) == ("SUCCESS", "sent")
        assert (alert.status, alert.attempts, alert.last_error) == (Alert.Status.SENT, 2, "")
        assert alert.sent_at is not None
        assert len(webhook_only.received) == 2

    def test_after_a_500_the_alert_waits_pending_with_the_error(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(500, body="upstream down")

        delivery = alert_deliver(alert.pk, backoff=lambda attempt: 10.0)

        alert.refresh_from_db()
        assert delivery == Delivery(
            DeliveryOutcome.RETRY, retry_in=10.0, error="HTTP 500: upstream down"
        )
        assert (alert.status, alert.attempts) == (Alert.Status.PENDING, 1)
        assert alert.last_error == "HTTP 500: upstream down"

    def test_a_429_waits_as_long_as_retry_after_says(self, webhook_only: AlertReceiver) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(429, headers={"Retry-After": "7"})

        delivery = alert_deliver(alert.pk, backoff=lambda attempt: 999.0)

        assert delivery == Delivery(DeliveryOutcome.RETRY, retry_in=7.0, error="HTTP 429: ")

    def test_telegrams_retry_after_in_the_body_is_honoured(
        self, all_channels: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident(), channel=Alert.Channel.TELEGRAM)
        all_channels.answer_next(
            429, body='{"ok": false, "error_code": 429, "parameters": {"retry_after": 12}}'
        )

        delivery = alert_deliver(alert.pk, backoff=lambda attempt: 999.0)

        assert (delivery.outcome, delivery.retry_in) == (DeliveryOutcome.RETRY, 12.0)

    def test_without_retry_after_the_back_off_grows_with_each_attempt(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(503, count=3)
        asked: list[int] = []

        def backoff(attempt: int) -> float:
            asked.append(attempt)
            return 10.0 * 2.0 ** (attempt - 1)

        waits = [alert_deliver(alert.pk, backoff=backoff).retry_in for _ in range(3)]

        assert asked == [1, 2, 3]
        assert waits == [10.0, 20.0, 40.0]

    def test_a_404_fails_for_good_without_a_retry(self, webhook_only: AlertReceiver) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(404, body="no such hook")

        result = alert_send_task.apply(args=(alert.pk,))

        alert.refresh_from_db()
        assert (result.state, result.result) == ("SUCCESS", "failed")
        assert (alert.status, alert.attempts) == (Alert.Status.FAILED, 1)
        assert alert.last_error == "HTTP 404: no such hook"
        assert len(webhook_only.received) == 1

    def test_a_dead_receiver_fails_after_the_last_attempt_and_keeps_the_secret(
        self, settings: Any
    ) -> None:
        # nothing listens on this port: every attempt is refused
        channels_configure(settings, f"http://127.0.0.1:{free_port()}", slack=False)
        incident = halt_incident()
        telegram = Alert.objects.get(incident=incident, channel=Alert.Channel.TELEGRAM)

        result = alert_send_task.apply(args=(telegram.pk,))  # retries run at once, eagerly

        telegram.refresh_from_db()
        assert (result.state, result.result) == ("SUCCESS", "failed")
        assert (telegram.status, telegram.attempts) == (Alert.Status.FAILED, ALERT_MAX_ATTEMPTS)
        assert "ConnectionError" in telegram.last_error
        assert f"gave up after {ALERT_MAX_ATTEMPTS} attempts" in telegram.last_error
        assert TELEGRAM_TOKEN not in telegram.last_error
        assert "<redacted>" in telegram.last_error

    def test_a_sent_alert_is_not_sent_again(self, webhook_only: AlertReceiver) -> None:
        alert = Alert.objects.get(incident=halt_incident())

        outcomes = [alert_deliver(alert.pk).outcome for _ in range(2)]

        assert outcomes == [DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED]
        assert len(webhook_only.received) == 1

    def test_a_channel_no_longer_configured_fails_the_alert(
        self, webhook_only: AlertReceiver, settings: Any
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        settings.ALERT_WEBHOOK_URL = ""

        assert alert_deliver(alert.pk).outcome == DeliveryOutcome.FAILED
        alert.refresh_from_db()
        assert "no longer configured" in alert.last_error
        assert webhook_only.received == []

    def test_a_failed_alert_can_be_sent_again(
        self, webhook_only: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(400)
        alert_deliver(alert.pk)

        with django_capture_on_commit_callbacks() as callbacks:
            assert alerts_resend(alert_ids=[alert.pk]) == 1
            assert alerts_resend(alert_ids=[alert.pk]) == 0  # pending now, not failed

        alert.refresh_from_db()
        assert (alert.status, alert.attempts) == (Alert.Status.PENDING, 0)
        assert len(callbacks) == 1
        assert alert_deliver(alert.pk).outcome == DeliveryOutcome.SENT


@pytest.mark.django_db(transaction=True)
def test_two_workers_with_the_same_alert_send_it_once(webhook_only: AlertReceiver) -> None:
    alert = Alert.objects.get(incident=halt_incident())
    webhook_only.delay = 0.5  # the first worker is still in its HTTP call when the second comes
    outcomes: list[DeliveryOutcome] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait(timeout=10)
            outcomes.append(alert_deliver(alert.pk).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == [DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED]
    assert len(webhook_only.received) == 1


@pytest.mark.django_db
class TestRateLimit:
    def test_over_the_limit_an_alert_is_delayed_not_dropped(
        self, webhook_only: AlertReceiver
    ) -> None:
        now = timezone.now().replace(second=10, microsecond=0)
        alerts = [
            Alert.objects.get(
                incident=incident_open(
                    component="reconcile",
                    code=f"foreign_order_{n}",
                    severity=Incident.Severity.WARNING,
                    message=f"foreign order {n}",
                )
            )
            for n in range(3)
        ]

        outcomes = [alert_deliver(a.pk, now=now, per_minute=2) for a in alerts]

        assert [d.outcome for d in outcomes] == ["sent", "sent", "delayed"]
        delayed = outcomes[2]
        assert delayed.retry_in is not None
        assert 50 <= delayed.retry_in <= 70  # to the next minute (plus a little spread)
        alerts[2].refresh_from_db()
        assert (alerts[2].status, alerts[2].attempts) == (Alert.Status.PENDING, 0)
        assert len(webhook_only.received) == 2

        # the next minute has room again
        later = alert_deliver(alerts[2].pk, now=now + timedelta(minutes=1), per_minute=2)
        assert later.outcome == DeliveryOutcome.SENT
        assert len(webhook_only.received) == 3

    def test_the_task_retries_a_delayed_alert_instead_of_failing_it(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        minute = int(timezone.now().timestamp() // 60)
        for window in (minute, minute + 1):  # this minute's sends are used up (and the next's)
            redis_client().set(redis_key("alerts", "rate", "webhook", str(window)), 10_000, ex=180)

        # as a worker runs it (not eagerly, where a retry would run at once and be delayed
        # again): the task asks to run again later
        # (celery-types gives push_request the task's own parameters; it takes a request's)
        alert_send_task.push_request(  # type: ignore[call-arg]
            id="delayed", args=[alert.pk], retries=0, is_eager=True, called_directly=False
        )
        try:
            with pytest.raises(Retry) as retried:
                alert_send_task.run(alert.pk)
        finally:
            alert_send_task.pop_request()

        alert.refresh_from_db()
        assert isinstance(retried.value.when, float)
        assert 0 < retried.value.when <= 130
        assert (alert.status, alert.attempts) == (Alert.Status.PENDING, 0)
        assert webhook_only.received == []

    def test_each_channel_has_its_own_limit(self, all_channels: AlertReceiver) -> None:
        now = timezone.now()
        alerts = Alert.objects.filter(incident=halt_incident())

        outcomes = {a.channel: alert_deliver(a.pk, now=now, per_minute=1).outcome for a in alerts}

        assert set(outcomes.values()) == {DeliveryOutcome.SENT}


@pytest.mark.django_db
class TestStatus:
    def test_it_reports_channels_failures_and_stuck_alerts(
        self, webhook_only: AlertReceiver
    ) -> None:
        now = timezone.now()
        failed = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(403, body="forbidden")
        alert_deliver(failed.pk)
        stuck = Alert.objects.get(
            incident=incident_open(
                component="venue",
                code="venue_banned",
                severity=Incident.Severity.CRITICAL,
                message="418",
            )
        )
        # queued six minutes ago and its task never ran (due then, overdue now)
        Alert.objects.filter(pk=stuck.pk).update(
            created_at=now - timedelta(minutes=6), next_attempt_at=now - timedelta(minutes=6)
        )

        status = alerts_status(now=now)

        assert status.channels == ("webhook",)
        assert (status.failed_recently, status.last_error) == (1, "HTTP 403: forbidden")
        assert status.pending_stuck == 1
        assert status.oldest_pending_at == now - timedelta(minutes=6)

    def test_failures_older_than_a_day_are_not_counted(self, webhook_only: AlertReceiver) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        Alert.objects.filter(pk=alert.pk).update(
            status=Alert.Status.FAILED, created_at=timezone.now() - timedelta(hours=25)
        )

        status = alerts_status()

        assert (status.failed_recently, status.last_error, status.pending_stuck) == (0, "", 0)


@pytest.fixture
def worker_with_alerts(
    receiver: AlertReceiver,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Callable[[], Process]:
    """A real Celery worker whose settings point the webhook channel at ``receiver``."""
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}{WEBHOOK_PATH}")
    channels_configure(settings, receiver.url, slack=False, telegram=False)

    def start() -> Process:
        process: Process = request.getfixturevalue("celery_worker_process")
        return process

    return start


@pytest.mark.django_db(transaction=True)
def test_an_incident_reaches_the_receiver_through_the_real_worker(
    receiver: AlertReceiver, worker_with_alerts: Callable[[], Process]
) -> None:
    worker = worker_with_alerts()

    incident = halt_incident()
    alert = Alert.objects.get(incident=incident)

    wait_for(
        lambda: Alert.objects.filter(pk=alert.pk, status=Alert.Status.SENT).exists(),
        timeout=60,
        what=lambda: f"the alert to be sent; worker log:\n{worker.log()}",
    )
    (received,) = receiver.received
    assert received.body["incident_id"] == incident.pk
    assert received.body["event"] == "opened"


@pytest.mark.django_db
class TestAdmin:
    @pytest.fixture
    def staff(self, client: Client, django_user_model: type[User]) -> Callable[[str], Client]:
        def login(group: str) -> Client:
            user = django_user_model.objects.create_user(
                f"{group}-1", password="a-long-secret-7", is_staff=True
            )
            user.groups.add(Group.objects.get_or_create(name=group)[0])
            client.force_login(user)
            return client

        return login

    def test_the_list_shows_alerts_with_their_errors(
        self, webhook_only: AlertReceiver, staff: Callable[[str], Client]
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(410, body="hook deleted")
        alert_deliver(alert.pk)

        viewer = staff("viewer")
        page = viewer.get("/admin/doctor/alert/?status__exact=failed")

        assert page.status_code == 200
        assert "HTTP 410: hook deleted" in page.content.decode()
        assert viewer.get(f"/admin/doctor/alert/{alert.pk}/change/").status_code == 200

    def test_an_operator_resends_failed_alerts(
        self,
        webhook_only: AlertReceiver,
        staff: Callable[[str], Client],
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(400)
        alert_deliver(alert.pk)

        with django_capture_on_commit_callbacks() as callbacks:
            response = staff("operator").post(
                "/admin/doctor/alert/",
                {"action": "resend", "_selected_action": [alert.pk]},
                follow=True,
            )

        assert "1 alert(s) queued again" in response.content.decode()
        alert.refresh_from_db()
        assert alert.status == Alert.Status.PENDING
        assert len(callbacks) == 1

    def test_a_viewer_cannot_resend(
        self, webhook_only: AlertReceiver, staff: Callable[[str], Client]
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        Alert.objects.filter(pk=alert.pk).update(status=Alert.Status.FAILED)

        staff("viewer").post(
            "/admin/doctor/alert/", {"action": "resend", "_selected_action": [alert.pk]}
        )

        alert.refresh_from_db()
        assert alert.status == Alert.Status.FAILED


@pytest.mark.django_db
class TestLostTasks:
    def test_an_alert_whose_task_never_came_is_queued_again_by_the_sweep(
        self, webhook_only: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        # given a halt alert whose delivery task was lost (the broker was down at the commit)
        with django_capture_on_commit_callbacks(execute=False):
            alert = Alert.objects.get(incident=halt_incident())
        assert alert.next_attempt_at == alert.created_at
        created = alert.created_at

        # a minute later nothing is overdue yet; three minutes later it is
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert alerts_sweep(now=created + timedelta(minutes=1)) == 0
        assert callbacks == []
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert alerts_sweep(now=created + timedelta(minutes=3)) == 1
        assert len(callbacks) == 1  # the dispatch of its task, once committed
        # and swept once: the next sweep right after finds it due again only later
        assert alerts_sweep(now=created + timedelta(minutes=3, seconds=30)) == 0

        # then the queued task sends it
        assert alert_deliver(alert.pk).outcome == DeliveryOutcome.SENT
        assert len(webhook_only.received) == 1

    def test_an_alert_waiting_out_its_back_off_is_not_swept(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(503)
        now = timezone.now()
        delivery = alert_deliver(alert.pk, now=now, backoff=lambda _attempt: 600.0)
        assert delivery.outcome == DeliveryOutcome.RETRY
        alert.refresh_from_db()
        assert alert.next_attempt_at == now + timedelta(seconds=600)
        assert alerts_sweep(now=now + timedelta(minutes=9)) == 0
        assert alerts_sweep(now=now + timedelta(minutes=13)) == 1

    def test_an_operator_can_resend_an_overdue_pending_alert(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        assert alerts_resend(alert_ids=[alert.pk]) == 0  # its task is still due
        later = alert.created_at + timedelta(minutes=5)
        assert alerts_resend(alert_ids=[alert.pk], now=later) == 1

    def test_a_chain_a_sweep_replaced_stops_and_the_new_one_sends(
        self, webhook_only: AlertReceiver, django_capture_on_commit_callbacks: Any
    ) -> None:
        with django_capture_on_commit_callbacks(execute=False):
            alert = Alert.objects.get(incident=halt_incident())
        with django_capture_on_commit_callbacks(execute=False):
            alerts_sweep(now=alert.created_at + timedelta(minutes=3))
        alert.refresh_from_db()
        assert alert.dispatch == 1
        # the first task turns up after all (a slow queue): it no longer owns the alert
        assert alert_deliver(alert.pk, dispatch=0).outcome == DeliveryOutcome.SKIPPED
        assert webhook_only.received == []
        assert alert_deliver(alert.pk, dispatch=1).outcome == DeliveryOutcome.SENT
        assert len(webhook_only.received) == 1

    def test_the_cron_watchdog_leaves_an_alert_waiting_out_its_back_off_alone(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        webhook_only.answer_next(503)
        assert alert_deliver(alert.pk).outcome == DeliveryOutcome.RETRY  # back-off set
        assert alerts_deliver_due() == {}  # not due: not even picked
        late = alert_deliver(alert.pk, only_if_due=True)  # picked just before, due later
        assert late.outcome == DeliveryOutcome.SKIPPED
        alert.refresh_from_db()
        assert alert.attempts == 1
        assert len(webhook_only.received) == 1

    def test_an_answer_received_but_not_recorded_is_recorded_not_sent_again(
        self, webhook_only: AlertReceiver
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        # the receiver answered 2xx, then recording it failed (the marker is all that is left)
        redis_client().set(redis_key("alerts", "sent", str(alert.pk)), "1", ex=60)
        try:
            assert alert_deliver(alert.pk).outcome == DeliveryOutcome.SENT
        finally:
            redis_client().delete(redis_key("alerts", "sent", str(alert.pk)))
        assert webhook_only.received == []
        alert.refresh_from_db()
        assert alert.status == Alert.Status.SENT

    def test_the_cron_watchdog_leaves_channels_it_has_no_settings_for_to_the_workers(
        self, webhook_only: AlertReceiver, settings: Any
    ) -> None:
        alert = Alert.objects.get(incident=halt_incident())
        settings.ALERT_WEBHOOK_URL = ""  # this process lacks the setting; the workers have it
        assert alerts_deliver_due() == {"skipped": 1}
        alert.refresh_from_db()
        assert alert.status == Alert.Status.PENDING
