"""``/metrics``: bearer-token access, and every metric against a recount of the rows behind it."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from requests import Response

from doctor.models import DoctorSnapshot, Heartbeat
from routing.binance_testserver import BinanceTestServer, FaultKind
from routing.models import Order, Signal
from routing.resilience import (
    RetriesExhausted,
    RetryPolicy,
    VenueBanned,
    VenueCallError,
    VenueRejected,
)
from routing.runtime import BINANCE_WEIGHT_PER_MINUTE
from routing.venues import BinanceFutures
from routing.weights import WeightBudget
from tests.conftest import wait_for
from tests.routing.test_dashboard_socket import dashboard_socket, receive, session_cookie
from tradingsite.guard import GuardContext, binance_client_for_writing
from tradingsite.metrics import (
    WEBSOCKET_MAX_AGE_SECONDS,
    WEIGHT_BUDGET,
    metrics_exposition,
    venue_error_record,
    websocket_client_seen,
)
from tradingsite.models import OutboxEntry
from tradingsite.redisconn import redis_client, redis_key

TOKEN = "a-metrics-token-for-the-tests"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


@pytest.fixture(autouse=True)
def _fresh_redis_metrics() -> None:
    """The Redis-kept counts start empty (other tests share the suite's key prefix)."""
    redis_client().delete(
        redis_key("metrics", "venue_errors"), redis_key("metrics", "websocket_clients")
    )


@pytest.fixture
def metrics_token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def parse(text: str) -> Samples:
    """Every sample of an exposition: sample name -> {label set: value}."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def labelled(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(dict(key)[label] for label in labels): value
        for key, value in samples.get(name, {}).items()
    }


def unlabelled(samples: Samples, name: str) -> float | None:
    return samples.get(name, {}).get(frozenset())


def make_order(n: int, *, symbol: str, status: str, last_error: str = "") -> Order:
    return Order.objects.create(
        client_order_id=f"metrics-{n}",
        symbol=symbol,
        side="BUY",
        type="MARKET",
        quantity=Decimal("0.01"),
        status=status,
        last_error=last_error,
        decided_at=NOW,
    )


def make_signal(*, status: str, risk_code: str = "") -> Signal:
    return Signal.objects.create(
        created_at=NOW,
        source="external",
        symbol="BTCUSDT",
        side="BUY",
        strength=Decimal("0.5"),
        status=status,
        risk_code=risk_code,
    )


@pytest.mark.django_db
class TestAccess:
    def test_it_is_off_until_a_token_is_set(self, client: Client, settings: Any) -> None:
        settings.METRICS_TOKEN = ""
        response = client.get("/metrics", headers={"Authorization": "Bearer "})
        assert response.status_code == 404
        assert b"METRICS_TOKEN" in response.content

    def test_it_asks_for_a_bearer_token_when_none_is_sent(
        self, client: Client, metrics_token: str
    ) -> None:
        response = client.get("/metrics")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"tradingsite_" not in response.content

    @pytest.mark.parametrize(
        "authorization",
        [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"Basic {TOKEN}", TOKEN],
    )
    def test_it_refuses_a_wrong_token(
        self, client: Client, metrics_token: str, authorization: str
    ) -> None:
        response = client.get("/metrics", headers={"Authorization": authorization})
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_it_answers_the_right_token_at_the_root_without_a_redirect(
        self, client: Client, metrics_token: str
    ) -> None:
        response = client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert "no-cache" in response["Cache-Control"]
        assert "tradingsite_orders" in {
            f.name for f in text_string_to_metric_families(response.content.decode())
        }

    def test_it_answers_get_only(self, client: Client, metrics_token: str) -> None:
        response = client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 405


@pytest.mark.django_db
class TestValuesFromTheDatabase:
    def test_orders_are_counted_per_symbol_and_status(
        self, client: Client, metrics_token: str
    ) -> None:
        # given orders in several states on two symbols
        made = [
            ("BTCUSDT", "filled"),
            ("BTCUSDT", "filled"),
            ("BTCUSDT", "open"),
            ("BTCUSDT", "unknown"),
            ("ETHUSDT", "filled"),
            ("ETHUSDT", "canceled"),
            ("SOLUSDT", "rejected"),
        ]
        for n, (symbol, status) in enumerate(made):
            make_order(n, symbol=symbol, status=status)

        # when
        orders = labelled(scrape(client), "tradingsite_orders", "symbol", "status")

        # then every traded symbol has every status (zeros too), plus what the rows hold
        expected = {(s, status): 0 for s in settings.SYMBOLS for status in Order.Status.values}
        expected.update(Counter(made))
        assert orders == expected

    def test_rejects_are_counted_by_stage_and_reason(
        self, client: Client, metrics_token: str
    ) -> None:
        # given signals refused before any order, and orders the venue side refused, each with
        # the last_error the router stores (the str() of the resilience layer's exceptions)
        refused = ["max_order_notional", "max_order_notional", "kill_switch,max_position", ""]
        for code in refused:
            make_signal(status=Signal.Status.REJECTED, risk_code=code)
        make_signal(status=Signal.Status.ACCEPTED)
        make_signal(status=Signal.Status.ROUTED)
        venue_refused = [
            (str(VenueRejected(-2019, "Margin is insufficient.")), "-2019"),
            (str(VenueRejected(-2019, "Margin is insufficient.")), "-2019"),
            (str(VenueRejected(-4164, "Order's notional must be no smaller than 5.")), "-4164"),
            (str(VenueBanned(120.0)), "banned"),
            (str(VenueBanned(None)), "banned"),
            (str(RetriesExhausted(TimeoutError("no answer"), 5)), "retries_exhausted"),
            ("not placed after 3 submissions", "not_placed"),
            ("", "venue_status"),
        ]
        for n, (last_error, _) in enumerate(venue_refused):
            make_order(n, symbol="BTCUSDT", status="rejected", last_error=last_error)
        make_order(99, symbol="BTCUSDT", status="canceled", last_error="not sent: kill switch")

        # when
        rejects = labelled(scrape(client), "tradingsite_rejects_total", "stage", "reason")

        # then
        expected = Counter(("pretrade", code or "unspecified") for code in refused)
        expected.update(("venue", reason) for _, reason in venue_refused)
        assert rejects == dict(expected)
        assert sum(v for (stage, _), v in rejects.items() if stage == "venue") == (
            Order.objects.filter(status="rejected").count()
        )

    def test_the_newest_live_tick_duration_is_reported(
        self, client: Client, metrics_token: str
    ) -> None:
        # given no tick yet: no sample rather than a made-up zero
        samples = scrape(client)
        assert unlabelled(samples, "tradingsite_executor_tick_duration_seconds") is None

        # given two live ticks and a newer benchmark run (not the live executor)
        for minutes, duration_ms, run in [
            (0, 812.5, "live"),
            (1, 1234.5, "live"),
            (2, 9.0, "bench"),
        ]:
            Heartbeat.objects.create(
                component="executor",
                created_at=NOW + timedelta(minutes=minutes),
                metrics={"duration_ms": duration_ms, "run": run},
            )
        Heartbeat.objects.create(component="worker", created_at=NOW + timedelta(minutes=3))

        samples = scrape(client)

        assert unlabelled(samples, "tradingsite_executor_tick_duration_seconds") == 1.2345
        assert unlabelled(samples, "tradingsite_executor_last_tick_timestamp_seconds") == (
            (NOW + timedelta(minutes=1)).timestamp()
        )

    def test_the_newest_doctor_confidence_is_reported(
        self, client: Client, metrics_token: str
    ) -> None:
        assert unlabelled(scrape(client), "tradingsite_doctor_confidence") is None

        for minutes, confidence, status in [(0, 0.9, "ok"), (5, 0.55, "warn")]:
            DoctorSnapshot.objects.create(
                taken_at=NOW + timedelta(minutes=minutes), status=status, confidence=confidence
            )

        samples = scrape(client)
        newest = DoctorSnapshot.objects.order_by("-taken_at").first()
        assert newest is not None
        assert unlabelled(samples, "tradingsite_doctor_confidence") == newest.confidence == 0.55
        assert unlabelled(samples, "tradingsite_doctor_snapshot_timestamp_seconds") == (
            newest.taken_at.timestamp()
        )

    def test_the_outbox_backlog_counts_entries_not_sent(
        self, client: Client, metrics_token: str
    ) -> None:
        assert unlabelled(scrape(client), "tradingsite_outbox_backlog") == 0
        states = ["sent", "waiting", "parked", "sent", "waiting"]
        for n, state in enumerate(states):
            OutboxEntry.objects.create(
                collection="state",
                doc_id=f"doc-{n}",
                payload={"n": n},
                sent_at=NOW if state == "sent" else None,
                parked_at=NOW if state == "parked" else None,
            )
        samples = scrape(client)
        assert unlabelled(samples, "tradingsite_outbox_backlog") == states.count("waiting")
        assert unlabelled(samples, "tradingsite_outbox_parked") == states.count("parked")
        lag = unlabelled(samples, "tradingsite_outbox_lag_seconds")
        assert lag is not None
        assert lag >= 0


@pytest.mark.django_db
class TestValuesFromRedis:
    def test_request_weight_is_this_minutes_count_of_the_shared_budget(self) -> None:
        # given weight reserved by two "workers" and the venue's own count seen in one minute
        now_ms = int(NOW.timestamp() * 1000) + 12_345
        budget = WeightBudget(BINANCE_WEIGHT_PER_MINUTE, name=WEIGHT_BUDGET)
        redis_client().delete(budget.key(now_ms // 60_000), budget.key(now_ms // 60_000 + 1))
        budget.reserve(5, now_ms=now_ms)
        budget.reserve(40, now_ms=now_ms + 1_000)

        samples = parse(metrics_exposition(now=now_ms / 1000 + 2).decode())
        used = labelled(samples, "tradingsite_venue_request_weight_used", "budget")
        limit = labelled(samples, "tradingsite_venue_request_weight_limit", "budget")
        assert budget.used(now_ms=now_ms) == 45
        assert used == {(WEIGHT_BUDGET,): 45}
        assert limit == {(WEIGHT_BUDGET,): BINANCE_WEIGHT_PER_MINUTE}

        budget.observe(300, now_ms=now_ms + 2_000)  # the venue saw more (another client)
        samples = parse(metrics_exposition(now=now_ms / 1000 + 3).decode())
        assert labelled(samples, "tradingsite_venue_request_weight_used", "budget") == {
            (WEIGHT_BUDGET,): 300
        }

        # and a new minute starts from nothing
        samples = parse(metrics_exposition(now=now_ms / 1000 + 60).decode())
        assert labelled(samples, "tradingsite_venue_request_weight_used", "budget") == {
            (WEIGHT_BUDGET,): 0
        }

    def test_venue_errors_are_counted_by_code(
        self, client: Client, metrics_token: str, settings: Any
    ) -> None:
        # given real failures of python-binance's HTTP stack against the local test server
        failures: list[BaseException] = []
        kinds: list[FaultKind] = ["rate_limited", "rate_limited", "banned", "timestamp_1021"]
        with BinanceTestServer(balance=Decimal("1000")) as server:
            settings.BINANCE_API_KEY = server.api_key
            settings.BINANCE_API_SECRET = server.api_secret
            context = GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
            # the retry policy tells the counter of each failure, as routing.runtime wires it
            venue = BinanceFutures(
                client=binance_client_for_writing(context=context),
                policy=RetryPolicy(
                    max_attempts=1, sleep=lambda _: None, on_error=venue_error_record
                ),
            )
            for kind in kinds:
                server.faults.push(kind, retry_after=1)
                with pytest.raises(VenueCallError) as raised:
                    venue.mark_prices()
                assert raised.value.__cause__ is not None
        # and failures with no JSON answer, or no answer at all
        not_json = Response()
        not_json.status_code, not_json._content = 502, b"<html>Bad Gateway</html>"
        failures.append(BinanceAPIException(not_json, 502, not_json.text))
        failures.append(ConnectionRefusedError("nothing listens"))

        # when those are counted too
        for failure in failures:
            venue_error_record(failure)

        # then
        errors = labelled(scrape(client), "tradingsite_venue_errors_total", "code")
        assert errors == {
            ("http_429",): 2,
            ("http_418",): 1,
            ("-1021",): 1,
            ("ConnectionRefusedError",): 1,
            ("http_502",): 1,
        }


@pytest.mark.django_db(transaction=True)
class TestWebsocketClients:
    def test_open_dashboards_are_counted_across_processes(
        self, asgi_server: str, viewer_user: User, metrics_token: str
    ) -> None:
        client = Client()

        def clients() -> float | None:
            return unlabelled(scrape(client), "tradingsite_websocket_clients")

        assert clients() == 0
        cookie = session_cookie(viewer_user)
        with dashboard_socket(asgi_server, cookie=cookie) as first:
            receive(first)  # the snapshot: the socket is open and counted
            assert clients() == 1
            with dashboard_socket(asgi_server, cookie=cookie) as second:
                receive(second)
                assert clients() == 2
            wait_for(lambda: clients() == 1, timeout=30, what="the closed socket to be uncounted")
        wait_for(lambda: clients() == 0, timeout=30, what="both sockets to be uncounted")

    def test_sockets_of_a_crashed_web_process_age_out(
        self, client: Client, metrics_token: str
    ) -> None:
        # given one socket last seen too long ago (its process died) and one seen just now
        now = time.time()
        websocket_client_seen(connection_id="died", at=now - WEBSOCKET_MAX_AGE_SECONDS - 1)
        websocket_client_seen(connection_id="alive", at=now - WEBSOCKET_MAX_AGE_SECONDS + 30)

        assert unlabelled(scrape(client), "tradingsite_websocket_clients") == 1
        members = redis_client().zrange(redis_key("metrics", "websocket_clients"), 0, -1)
        assert members == [b"alive"]
