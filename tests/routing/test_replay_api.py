"""Replays through the API and the dashboard: start a run, read it back (list, detail with
its router health, the divergence report as JSON and CSV, the Router Health endpoints with
``?run=``), refused input, roles, and the stop / resume / delete state rules.

The runs are run in the test (``replay_start``), not by a worker. ``client`` in this package
is python-binance's (tests/routing/conftest.py): Django's test client is made explicitly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from kombu.exceptions import OperationalError

from routing.divergence import CAUSES, CSV_COLUMNS
from routing.health import router_health_refresh, router_health_summary
from routing.models import MarketBar, ReplayRun
from routing.replay import replay_lock_name, replay_start
from routing.tasks import replay_task
from tests.routing import replay_support
from tests.routing.replay_support import MS, T0, eager_paper_trading
from tradingsite.locks import single_flight
from tradingsite.replaydb import replay_database_drop, replay_database_exists

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("global_limits")]

LIVE_MINUTES = 30
BARS = 200  # stored bars of the tests without a live session
REPLAYS = "/api/v1/replays/"


@pytest.fixture(autouse=True)
def paper(settings: Any, global_limits: Any) -> None:
    eager_paper_trading(settings, global_limits)


@pytest.fixture(autouse=True)
def replay_databases(transactional_db: None) -> Iterator[None]:
    """Every replay database a test made is dropped after it (a deleted run's already is),
    before the tables are emptied."""
    yield
    for pk in ReplayRun.objects.values_list("pk", flat=True):
        replay_database_drop(pk)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def live_session(minutes: int = LIVE_MINUTES) -> None:
    replay_support.live_session(minutes)


def store_bars(count: int = BARS, symbol: str = "BTCUSDT") -> None:
    """``count`` one-minute bars closing before T0, as Binance has them: open on the minute,
    close 59.999 s later."""
    price = Decimal("60000")
    rows = []
    for index in range(count):
        opened = T0 - timedelta(minutes=count - index)
        close = price + Decimal((index * 37) % 11 - 5) * 7
        rows.append(
            MarketBar(
                symbol=symbol,
                interval="1m",
                open_time=opened,
                close_time=opened + timedelta(seconds=60) - MS,
                open=price,
                high=max(price, close) + 5,
                low=min(price, close) - 5,
                close=close,
                volume=Decimal("12.5"),
            )
        )
        price = close
    MarketBar.objects.bulk_create(rows)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def start_body(**changes: Any) -> dict[str, Any]:
    """A request for the last 100 of the stored bars."""
    return {
        "start": iso(T0 - timedelta(minutes=100)),
        "end": iso(T0 - MS),
        "symbols": ["BTCUSDT"],
        **changes,
    }


def started(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(REPLAYS, body, content_type="application/json")
    assert answer.status_code == 202, answer.content
    shown: dict[str, Any] = answer.json()
    assert answer["Location"] == f"{REPLAYS}{shown['id']}/" == shown["url"]
    return shown


def csv_rows(answer: Any) -> list[list[str]]:
    text = b"".join(answer.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


# --- a run from start to its report -----------------------------------------------------------


def test_a_replay_started_through_the_api_runs_and_reads_back(
    operator_user: User, viewer_user: User
) -> None:
    live_session()
    router_health_refresh()
    live_health = router_health_summary("all")
    assert live_health is not None
    operator = logged_in(operator_user)

    shown = started(
        operator,
        {
            "start": iso(T0 - MS),  # the close of the bar live's first tick decided on
            "end": iso(T0 + timedelta(minutes=LIVE_MINUTES - 1) - MS),
            "symbols": "btcusdt",  # a comma-separated string works too
            "slippage_bps": "25",  # worse fills than live's: a gap to explain
        },
    )
    run = ReplayRun.objects.get(pk=shown["id"])
    assert shown["status"] == "queued"
    assert shown["symbols"] == ["BTCUSDT"]
    assert shown["bars_total"] == LIVE_MINUTES
    assert shown["settings"]["slippage_bps"] == "25"
    assert run.created_by == "olive (API)"
    assert run.task_id  # queued on the broker once the request committed
    entry = LogEntry.objects.get(object_id=str(run.pk))
    assert entry.user == operator_user
    assert "replay started from the API" in entry.change_message

    viewer = logged_in(viewer_user)
    detail = viewer.get(shown["url"]).json()
    assert detail["router_health"] is None
    assert detail["note"] == "The replay is queued and has no database yet (made when it starts)."
    for path in ("divergence/", "divergence.csv"):
        refused = viewer.get(f"{shown['url']}{path}")
        assert refused.status_code == 409
        assert "queued" in refused.json()["detail"]
    not_done = viewer.get(f"/api/v1/router-health/all/?run={run.pk}")
    assert not_done.status_code == 400
    assert "once it is done" in not_done.json()["run"][0]

    replay_start(run.pk)  # what the worker's task does

    listed = viewer.get(REPLAYS).json()
    assert [row["id"] for row in listed["results"]] == [run.pk]
    assert listed["results"][0]["status"] == "done"
    assert listed["results"][0]["bars_done"] == LIVE_MINUTES
    detail = viewer.get(shown["url"]).json()
    assert detail["status"] == "done"
    assert detail["note"] == ""
    health = detail["router_health"]
    assert health["window"] == "all"
    sources = {row["name"] for row in health["by_source"]}
    assert sources & {"momentum", "mean_reversion"}
    assert sources <= {"momentum", "mean_reversion", "unattributed"}
    assert health["overall"]["values"]["trades"] > 0

    # Router Health's endpoints read the replay's figures with ?run=, live's without.
    tables = viewer.get(f"/api/v1/router-health/all/?run={run.pk}").json()
    assert tables == health
    assert viewer.get("/api/v1/router-health/all/").json() == live_health
    replay_pnl = health["overall"]["values"]["realized_pnl"]
    assert replay_pnl != live_health["overall"]["values"]["realized_pnl"]
    curves = viewer.get(f"/api/v1/router-health/all/curves/?run={run.pk}").json()
    assert curves["computed_at"] == health["computed_at"]
    assert set(curves["source"]) == {row["name"] for row in health["by_source"]}
    nav = viewer.get(f"/api/v1/nav/curve/?run={run.pk}").json()
    assert nav["last"]["nav"] == run_final_nav(run.pk)

    report = viewer.get(f"{shown['url']}divergence/").json()
    assert report["run"] == run.pk
    assert report["live_trading"] is True
    gap = Decimal(report["gap"])
    assert gap == Decimal(report["replay_pnl"]) - Decimal(report["live_pnl"])
    assert gap < 0  # the replay paid more slippage
    assert set(report["causes"]) == set(CAUSES)
    parts = sum(Decimal(cause["pnl"]) for cause in report["causes"].values())
    assert abs(parts - gap) < Decimal("0.0001")  # the causes add up to the gap
    assert Decimal(report["causes"]["execution"]["pnl"]) < 0
    assert report["counts"]["matched"] > 0
    assert len(report["trades"]) == sum(
        report["counts"][name] for name in ("matched", "live_only", "replay_only", "neither_traded")
    )

    exported = viewer.get(f"{shown['url']}divergence.csv")
    assert exported.status_code == 200
    assert exported["Content-Type"] == "text/csv"
    assert f"replay-{run.pk}-divergence.csv" in exported["Content-Disposition"]
    header, *rows = csv_rows(exported)
    assert header == list(CSV_COLUMNS)
    assert len(rows) == len(report["trades"])
    assert [row[0] for row in rows] == [trade["cause"] for trade in report["trades"]]


def run_final_nav(run_id: int) -> str:
    nav: str = ReplayRun.objects.get(pk=run_id).summary["final_nav"]
    return nav


# --- refused input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"start": "2026-03-02T10:00:00"}, "start", "time zone"),
        ({"end": "not a time"}, "end", "format"),
        ({"end": iso(T0 - timedelta(minutes=150))}, "end", "after start"),
        ({"end": iso(datetime.now(UTC) + timedelta(days=1))}, "end", "future"),
        ({"symbols": []}, "symbols", "at least one"),
        ({"symbols": " , "}, "symbols", "at least one"),
        ({"symbols": "BTC USDT"}, "symbols", "not a futures symbol"),
        ({"symbols": 7}, "symbols", "list of symbols"),
        ({"symbols": "BTCUSDT,BTCUSDT"}, "symbols", "named twice"),
        ({"symbols": "ETHUSDT"}, "symbols", "no stored 1m bars of ETHUSDT"),
        ({"initial_nav": "lots"}, "initial_nav", "valid number"),
        ({"initial_nav": "0"}, "initial_nav", "> 0"),
        ({"slippage_bps": "-1"}, "slippage_bps", ">= 0"),
    ],
)
def test_a_request_that_cannot_run_is_a_400_naming_the_field_and_records_nothing(
    operator_user: User, changes: dict[str, Any], field: str, says: str
) -> None:
    store_bars()
    answer = logged_in(operator_user).post(
        REPLAYS, start_body(**changes), content_type="application/json"
    )
    assert answer.status_code == 400, answer.content
    assert says in " ".join(answer.json()[field])
    assert not ReplayRun.objects.exists()
    assert not LogEntry.objects.exists()


def test_missing_fields_are_named(operator_user: User) -> None:
    answer = logged_in(operator_user).post(REPLAYS, {}, content_type="application/json")
    assert answer.status_code == 400
    assert set(answer.json()) == {"start", "end", "symbols"}


def test_viewers_read_replays_but_cannot_start_or_steer_them(
    operator_user: User, viewer_user: User
) -> None:
    store_bars()
    shown = started(logged_in(operator_user), start_body())
    viewer = logged_in(viewer_user)
    assert viewer.get(REPLAYS).json()["results"][0]["id"] == shown["id"]
    assert viewer.get(shown["url"]).status_code == 200
    refused = viewer.post(REPLAYS, start_body(), content_type="application/json")
    assert refused.status_code == 403
    assert "operator role" in refused.json()["detail"]
    for action in ("stop/", "resume/"):
        assert viewer.post(f"{shown['url']}{action}").status_code == 403
    assert viewer.delete(shown["url"]).status_code == 403
    assert ReplayRun.objects.count() == 1
    assert ReplayRun.objects.get().status == ReplayRun.Status.QUEUED
    assert Client().get(REPLAYS).status_code == 401


# --- stop, resume, delete -----------------------------------------------------------------------


def test_stop_resume_and_delete_follow_the_status(operator_user: User) -> None:
    store_bars()
    operator = logged_in(operator_user)
    url = started(operator, start_body())["url"]

    stopped = operator.post(f"{url}stop/")
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "interrupted"
    again = operator.post(f"{url}stop/")
    assert again.status_code == 409
    assert again.json() == {"detail": "the replay is interrupted, not running"}

    resumed = operator.post(f"{url}resume/")
    assert resumed.status_code == 202
    assert resumed.json()["status"] == "queued"
    assert resumed.json()["stop_requested"] is False
    twice = operator.post(f"{url}resume/")
    assert twice.status_code == 409
    assert "the replay is queued: only an interrupted" in twice.json()["detail"]

    run = ReplayRun.objects.get()
    replay_start(run.pk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.DONE, run.error
    assert run.bars_done == run.bars_total == 100
    assert operator.post(f"{url}stop/").status_code == 409
    assert operator.post(f"{url}resume/").status_code == 409
    assert operator.get(f"{url}divergence/").json()["live_trading"] is False

    actions = LogEntry.objects.filter(object_id=str(run.pk)).values_list(
        "change_message", flat=True
    )
    assert sorted(actions) == [
        "replay resumed from the API",
        "replay started from the API: BTCUSDT 2026-03-02T10:20:00+00:00 to "
        "2026-03-02T11:59:59.999000+00:00 (100 bars)",
        "replay stop requested from the API",
    ]

    assert replay_database_exists(run.pk)
    assert operator.delete(url).status_code == 204
    assert not ReplayRun.objects.exists()
    assert not replay_database_exists(run.pk)
    assert operator.get(url).status_code == 404


def test_a_run_its_worker_holds_is_not_deleted_or_resumed_but_an_abandoned_one_is(
    operator_user: User,
) -> None:
    store_bars()
    operator = logged_in(operator_user)
    url = started(operator, start_body())["url"]
    run = ReplayRun.objects.get()
    ReplayRun.objects.update(status=ReplayRun.Status.RUNNING)  # as its worker has it
    with single_flight(replay_lock_name(run.pk), ttl_seconds=60) as worker:
        assert worker.acquired
        refused = operator.delete(url)
        assert refused.status_code == 409
        assert refused.json() == {"detail": "the replay is running; stop it first"}
        assert operator.post(f"{url}resume/").status_code == 409
        stopping = operator.post(f"{url}stop/").json()
        assert stopping["status"] == "running"
        assert stopping["stop_requested"] is True
    assert ReplayRun.objects.count() == 1
    assert LogEntry.objects.filter(change_message__contains="deleted").count() == 0

    # The worker died (its lock is gone) without saying so: the run resumes.
    resumed = operator.post(f"{url}resume/")
    assert resumed.status_code == 202
    assert resumed.json()["status"] == "queued"


def test_a_run_the_broker_cannot_take_is_left_interrupted_and_said_so(
    operator_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_bars()

    def unreachable(**kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting: Connection refused.")

    monkeypatch.setattr(replay_task, "delay", unreachable)
    operator = logged_in(operator_user)
    answer = operator.post(REPLAYS, start_body(), content_type="application/json")
    run = ReplayRun.objects.get()
    assert answer.status_code == 503
    assert answer["Location"] == f"{REPLAYS}{run.pk}/"
    assert "recorded but NOT queued: the broker is unreachable" in answer.json()["detail"]
    assert run.status == ReplayRun.Status.INTERRUPTED
    assert run.task_id == ""
    assert operator.post(f"{REPLAYS}{run.pk}/resume/").status_code == 503
    page = operator.post(f"/controls/replays/{run.pk}/resume/", follow=True).content.decode()
    assert f"Replay {run.pk} is recorded but NOT queued" in page
    assert ReplayRun.objects.get().status == ReplayRun.Status.INTERRUPTED


def test_a_done_run_whose_database_is_gone_says_so(operator_user: User) -> None:
    store_bars()
    operator = logged_in(operator_user)
    url = started(operator, start_body())["url"]
    run_id = ReplayRun.objects.get().pk
    replay_start(run_id)
    replay_database_drop(run_id)
    detail = operator.get(url).json()
    assert detail["router_health"] is None
    assert detail["note"] == "The replay is done and has no database any more."
    gone = f"replay {run_id} has no database any more (run it again)"
    assert operator.get(f"/api/v1/nav/curve/?run={run_id}").json() == {"run": [gone]}
    assert operator.get(f"{url}divergence/").json() == {"detail": gone}
    assert gone in operator.get(f"/router-health/?run={run_id}").content.decode()
    page = operator.get(f"/replays/{run_id}/divergence/").content.decode()
    assert f"Replay {run_id} has no database any more (run it again)." in page


def test_unknown_runs_are_404_and_bad_run_parameters_400(viewer_user: User) -> None:
    viewer = logged_in(viewer_user)
    for path in ("", "divergence/", "divergence.csv"):
        assert viewer.get(f"{REPLAYS}999999/{path}").status_code == 404
    assert viewer.get(f"{REPLAYS}99999999999/").status_code == 404
    for query in ("run=999999", "run=abc", "run=0"):
        answer = viewer.get(f"/api/v1/router-health/24h/?{query}")
        assert answer.status_code == 400
        assert "run" in answer.json()
        assert viewer.get(f"/api/v1/nav/curve/?{query}").status_code == 400
    assert "there is no replay 999999" in str(
        viewer.get("/api/v1/router-health/24h/curves/?run=999999").json()
    )


# --- the dashboard: the Replays tab, its controls, Router Health ?run=, the divergence page ---


def test_the_replays_tab_starts_a_run_from_its_form_and_lists_it(operator_user: User) -> None:
    store_bars()
    operator = logged_in(operator_user)
    page = operator.get("/replays/").content.decode()
    assert 'id="replay-form"' in page
    assert "No replay yet" in page
    assert "BTCUSDT 2026-03-02 08:40 to 2026-03-02 11:59" in page  # the stored bars

    form = {"start": "2026-03-02T10:20", "end": "2026-03-02T11:59", "symbols": "BTCUSDT"}
    answer = operator.post("/controls/replays/", {**form, "slippage_bps": "5"}, follow=True)
    run = ReplayRun.objects.get()
    page = answer.content.decode()
    assert f"Replay {run.pk} queued: 99 bars to replay." in page
    assert run.start == datetime(2026, 3, 2, 10, 20, tzinfo=UTC)  # the form's times are UTC
    assert run.settings["slippage_bps"] == "5"
    assert run.created_by == "olive (dashboard)"
    assert f'<tr data-run="{run.pk}" data-status="queued">' in page
    assert f"/controls/replays/{run.pk}/stop/" in page

    operator.post(f"/controls/replays/{run.pk}/stop/")
    page = operator.get("/replays/").content.decode()
    assert f'<tr data-run="{run.pk}" data-status="interrupted">' in page
    assert f"/controls/replays/{run.pk}/resume/" in page
    assert f"/controls/replays/{run.pk}/stop/" not in page
    refused = operator.post(f"/controls/replays/{run.pk}/stop/", follow=True).content.decode()
    assert "the replay is interrupted, not running" in refused


def test_a_refused_form_says_why_keeps_what_was_typed_and_records_nothing(
    operator_user: User,
) -> None:
    store_bars()
    operator = logged_in(operator_user)
    form = {"start": "2026-03-02T11:00", "end": "2026-03-02T10:00", "symbols": "BTCUSDT"}
    page = operator.post("/controls/replays/", {**form, "initial_nav": "5000"}, follow=True)
    html = page.content.decode()
    assert "Replay not started. end: must be after start" in html
    assert 'value="2026-03-02T11:00"' in html
    assert 'value="5000"' in html
    assert not ReplayRun.objects.exists()
    # shown once: a fresh visit has the defaults again
    assert 'value="5000"' not in operator.get("/replays/").content.decode()


def test_viewers_see_the_replays_but_no_controls(operator_user: User, viewer_user: User) -> None:
    store_bars()
    shown = started(logged_in(operator_user), start_body())
    viewer = logged_in(viewer_user)
    page = viewer.get("/replays/").content.decode()
    assert f'data-run="{shown["id"]}"' in page
    assert "replay-form" not in page
    assert "/controls/replays/" not in page
    form = {"start": "2026-03-02T10:20", "end": "2026-03-02T11:59", "symbols": "BTCUSDT"}
    assert viewer.post("/controls/replays/", form).status_code == 403
    assert viewer.post(f"/controls/replays/{shown['id']}/stop/").status_code == 403
    assert ReplayRun.objects.get().status == ReplayRun.Status.QUEUED


def test_router_health_and_divergence_pages_of_a_done_run(operator_user: User) -> None:
    store_bars()
    operator = logged_in(operator_user)
    shown = started(operator, start_body(slippage_bps="3"))
    run_id = shown["id"]
    not_done = operator.get(f"/router-health/?run={run_id}").content.decode()
    assert "is queued: its figures can be read once it is done" in not_done
    waiting = operator.get(f"/replays/{run_id}/divergence/").content.decode()
    assert f"Replay {run_id} is queued: its figures can be read once it is done." in waiting

    replay_start(run_id)
    page = operator.get(f"/router-health/?window=24h&run={run_id}").content.decode()
    assert f'data-run="{run_id}"' in page
    assert f"<strong>Replay {run_id}</strong>" in page
    assert f'<option value="{run_id}" selected>' in page
    assert f'href="?window=7d&amp;run={run_id}"' in page
    live = operator.get("/router-health/").content.decode()
    assert 'data-run=""' in live
    assert f'<option value="{run_id}">' in live
    assert operator.get("/router-health/?run=424242").status_code == 200

    page = operator.get(f"/replays/{run_id}/divergence/").content.decode()
    for cause in CAUSES:
        assert f'<tr data-cause="{cause}">' in page
    assert f"/api/v1/replays/{run_id}/divergence.csv" in page
    assert "Live did not trade in this period" in page
    assert operator.get("/replays/424242/divergence/").status_code == 404
