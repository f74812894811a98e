"""Replay: the live executor's own steps over stored bars, in its own database, and the
divergence report that explains every difference from live trading.

The live side is a real paper session: ``executor_run_once`` ticks on the paper venue at
each bar close (PostgreSQL, Redis). Planted differences are edits of that session's live
records (said in each test), so the report has a known cause to find.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from routing.divergence import CAUSES, Decision, _match, divergence_report
from routing.models import (
    Fill,
    FillAttribution,
    MarketBar,
    NavPoint,
    Order,
    ReplayRun,
    Signal,
)
from routing.replay import (
    ReplayInterrupted,
    ReplayInvalid,
    replay_create,
    replay_lock_name,
    replay_resume,
    replay_start,
    replay_stop,
)
from routing.tasks import replay_task
from tests.conftest import wait_for
from tests.routing import replay_support
from tests.routing.replay_support import MS, T0, eager_paper_trading
from tradingsite.decimals import quantize
from tradingsite.locks import single_flight
from tradingsite.models import OutboxEntry
from tradingsite.replaydb import (
    ReplayDatabaseMissing,
    replay_active,
    replay_database,
    replay_database_drop,
    replay_database_exists,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("global_limits")]

MINUTES = 60


@pytest.fixture(autouse=True)
def paper(settings: Any, global_limits: Any) -> None:
    eager_paper_trading(settings, global_limits)


@pytest.fixture
def runs() -> Iterator[list[ReplayRun]]:
    """Replays a test makes; their databases are dropped afterwards."""
    made: list[ReplayRun] = []
    yield made
    for run in made:
        replay_database_drop(run.pk)


def live_session(minutes: int = MINUTES) -> None:
    replay_support.live_session(minutes)


def replay(runs: list[ReplayRun], minutes: int = MINUTES, **options: Any) -> ReplayRun:
    run = replay_create(
        start=T0 - MS,  # the close of the bar the first live tick decided on
        end=T0 + timedelta(minutes=minutes - 1) - MS,
        symbols=["BTCUSDT"],
        actor="test",
        **options,
    )
    runs.append(run)
    replay_start(run.pk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.DONE, run.error
    return run


def trades() -> list[tuple[Any, ...]]:
    return [
        (f.filled_at, f.symbol, f.side, f.quantity, f.price, f.fee, f.signal.source)
        for f in Fill.objects.select_related("signal").order_by("filled_at", "id")
        if f.signal is not None
    ]


def test_a_replay_of_a_live_paper_session_reproduces_its_trades(runs: list[ReplayRun]) -> None:
    live_session()
    live = trades()
    live_nav = NavPoint.objects.order_by("-at").values_list("nav", flat=True).first()
    live_rows = (Order.objects.count(), Fill.objects.count(), OutboxEntry.objects.count())
    assert len(live) > 10

    run = replay(runs)

    with replay_database(run.pk):
        assert replay_active() == run.pk
        assert trades() == live
        assert NavPoint.objects.order_by("-at").values_list("nav", flat=True).first() == live_nav
        # a replay is history, not news: nothing for the Firestore mirror
        assert not OutboxEntry.objects.exists()
    assert replay_active() is None
    # the live records are untouched by the replay (its rows are in its own database)
    assert (Order.objects.count(), Fill.objects.count(), OutboxEntry.objects.count()) == live_rows
    assert run.bars_done == run.bars_total == MINUTES
    assert run.settings["initial_nav_from"] == "default"  # no live NAV before the session
    assert run.summary["fills"] == Fill.objects.count()

    report = divergence_report(run)
    assert report.live_trading
    assert report.gap == 0
    assert report.live_pnl == report.replay_pnl
    assert all(value == 0 for value in report.causes.values())
    assert report.counts["live_only"] == report.counts["replay_only"] == 0
    assert report.counts["matched"] > 10
    # the report's PnL is the NAV change (marked at the last close, no cash flows)
    first_nav = Decimal(run.settings["initial_nav"])
    assert live_nav is not None
    assert quantize(report.live_pnl) == quantize(live_nav - first_nav)


def test_the_same_history_replayed_twice_gives_identical_trades(runs: list[ReplayRun]) -> None:
    live_session(30)
    first, second = replay(runs, 30), replay(runs, 30)
    with replay_database(first.pk):
        once = trades()
    with replay_database(second.pk):
        again = trades()
    assert once
    assert once == again
    assert first.summary["pnl"] == second.summary["pnl"]


def _matched_filled_decision() -> Order:
    return (
        Order.objects.filter(signal__isnull=False, status=Order.Status.FILLED)
        .order_by("decided_at")
        .select_related("signal")[5]
    )


def test_a_delayed_fill_is_found_and_attributed_to_delay(runs: list[ReplayRun]) -> None:
    live_session()
    run = replay(runs)
    # planted: one live order filled three bars later than it did, at that bar's open plus
    # the same slippage (as an order whose outcome was unknown for three minutes would)
    order = _matched_filled_decision()
    [fill] = order.fills.all()
    original_open = MarketBar.objects.get(
        symbol="BTCUSDT", open_time=fill.filled_at.replace(second=0, microsecond=0)
    ).open
    late = fill.filled_at.replace(second=0, microsecond=0) + timedelta(minutes=3)
    late_open = MarketBar.objects.get(symbol="BTCUSDT", open_time=late).open
    slip = fill.price - original_open
    new_price = late_open + slip
    Fill.objects.filter(pk=fill.pk).update(filled_at=late, price=new_price)

    report = divergence_report(run)

    q = fill.quantity if fill.side == "BUY" else -fill.quantity
    assert report.causes["delay"] == q * (late_open - original_open)
    assert report.causes["execution"] == 0  # the same slippage against each fill's bar
    for cause in set(CAUSES) - {"delay", "execution"}:
        assert report.causes[cause] == 0, cause
    # the whole gap is the price the late fill paid: replay - live = q * (new - old)
    assert report.gap == q * (new_price - fill.price)
    [row] = [r for r in report.rows if Decimal(r["delay_pnl"])]
    assert row["cause"] == "matched"
    assert row["live_fill_delay_s"] == pytest.approx(row["replay_fill_delay_s"] + 180)


def test_a_missed_signal_is_found_and_attributed_to_the_replay_only_trade(
    runs: list[ReplayRun],
) -> None:
    live_session()
    run = replay(runs)
    # planted: live never had one of its signals (its order and fills removed with it)
    order = _matched_filled_decision()
    signal = order.signal
    assert signal is not None
    [fill] = order.fills.all()
    FillAttribution.objects.filter(fill__order=order).delete()
    Fill.objects.filter(order=order).delete()
    order.delete()
    Signal.objects.filter(pk=signal.pk).delete()

    report = divergence_report(run)

    mark = Decimal(report.marks["BTCUSDT"])
    q = fill.quantity if fill.side == "BUY" else -fill.quantity
    expected = q * (mark - fill.price) - fill.fee  # what that trade earned in the replay
    assert report.causes["replay_only"] == expected
    assert report.gap == expected
    for cause in set(CAUSES) - {"replay_only"}:
        assert report.causes[cause] == 0, cause
    [row] = [r for r in report.rows if r["cause"] == "replay_only"]
    assert row["source"] == signal.source
    assert Decimal(row["replay_quantity"]) == fill.quantity
    assert row["live_decided_at"] is None


def test_a_different_size_is_found_and_attributed_to_sizing_and_fees(
    runs: list[ReplayRun],
) -> None:
    live_session()
    run = replay(runs)
    # planted: one live fill twice the size (and fee) the replay traded
    order = _matched_filled_decision()
    [fill] = order.fills.all()
    Fill.objects.filter(pk=fill.pk).update(quantity=fill.quantity * 2, fee=fill.fee * 2)

    report = divergence_report(run)

    mark = Decimal(report.marks["BTCUSDT"])
    q = fill.quantity if fill.side == "BUY" else -fill.quantity
    assert report.causes["sizing"] == (q - 2 * q) * (mark - fill.price)
    assert report.causes["fees"] == 2 * fill.fee - fill.fee
    for cause in set(CAUSES) - {"sizing", "fees"}:
        assert report.causes[cause] == 0, cause
    assert report.gap == report.causes["sizing"] + report.causes["fees"]
    # each cause's share of the gap, in the JSON
    shares = report.as_dict()["causes"]
    assert shares["sizing"]["share"] + shares["fees"]["share"] == pytest.approx(1.0)


def test_bad_requests_are_refused_and_record_nothing(runs: list[ReplayRun]) -> None:
    live_session(2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"start": T0, "end": T0 - timedelta(hours=1)}, "end"),
        ({"start": T0.replace(tzinfo=None)}, "start"),
        ({"symbols": []}, "symbols"),
        ({"symbols": ["DOGEUSDT"]}, "symbols"),
        ({"symbols": ["BTCUSDT", "BTCUSDT"]}, "symbols"),
        ({"initial_nav": "-5"}, "initial_nav"),
        ({"initial_nav": "lots"}, "initial_nav"),
        ({"slippage_bps": "NaN"}, "slippage_bps"),
        ({"end": datetime(2099, 1, 1, tzinfo=UTC)}, "end"),
    ]
    for change, field in cases:
        request: dict[str, Any] = {
            "start": T0 - timedelta(hours=2),
            "end": T0,
            "symbols": ["BTCUSDT"],
            "actor": "test",
            **change,
        }
        with pytest.raises(ReplayInvalid) as caught:
            replay_create(**request)
        assert caught.value.field == field, change
    assert not ReplayRun.objects.exists()


def test_bars_that_are_not_binance_klines_are_refused(runs: list[ReplayRun]) -> None:
    live_session(2)
    bar = MarketBar.objects.filter(symbol="BTCUSDT").order_by("-open_time")[3]
    MarketBar.objects.filter(pk=bar.pk).update(close_time=bar.open_time + timedelta(minutes=1))
    with pytest.raises(ReplayInvalid, match="one-minute klines"):
        replay_create(start=T0 - timedelta(hours=1), end=T0, symbols=["BTCUSDT"], actor="t")


def test_a_stopped_run_resumes_from_its_cursor_and_ends_as_an_uninterrupted_one(
    runs: list[ReplayRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    live_session(40)
    whole = replay(runs, 40)
    run = replay_create(
        start=T0 - MS, end=T0 + timedelta(minutes=39) - MS, symbols=["BTCUSDT"], actor="t"
    )
    runs.append(run)
    # an operator's stop arrives while the first chunk runs: the run stops after it
    monkeypatch.setattr("routing.replay.CHUNK_BARS", 10)

    def stop_after_first_chunk(step: Any) -> None:
        replay_stop(ReplayRun.objects.get(pk=run.pk))

    with pytest.raises(ReplayInterrupted):
        replay_start(run.pk, progress=stop_after_first_chunk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.INTERRUPTED
    assert run.bars_done == 10
    assert run.cursor == T0 + timedelta(minutes=9) - MS
    with replay_database(run.pk):
        assert ReplayRun.objects.get(pk=run.pk).bars_done == 10  # saved with the chunk
    with pytest.raises(ReplayInvalid, match="not running"):
        replay_stop(run)
    replay_resume(run)
    replay_start(run.pk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.DONE
    assert run.bars_done == 40
    with replay_database(whole.pk):
        uninterrupted = trades()
    with replay_database(run.pk):
        assert trades() == uninterrupted


def test_the_command_replays_and_resumes(runs: list[ReplayRun]) -> None:
    live_session(20)
    out = StringIO()
    call_command(
        "replay",
        "--from",
        (T0 - MS).isoformat(),
        "--to",
        (T0 + timedelta(minutes=19) - MS).isoformat(),
        "--symbols",
        "btcusdt",
        stdout=out,
        stderr=StringIO(),
    )
    run = ReplayRun.objects.get()
    runs.append(run)
    assert run.status == ReplayRun.Status.DONE
    assert f"replay {run.pk} done: 20 bars" in out.getvalue()
    with pytest.raises(CommandError, match="give --from, --to"):
        call_command("replay", "--symbols", "BTCUSDT")
    with pytest.raises(CommandError, match="no replay 999"):
        call_command("replay", "--resume", "999")
    with pytest.raises(CommandError, match="end: must be after start"):
        call_command("replay", "--from", "2026-03-02", "--to", "2026-03-01", "--symbols", "BTCUSDT")
    # a run whose worker died (left "running", nobody holds its lock) resumes, then deletes
    ReplayRun.objects.filter(pk=run.pk).update(status=ReplayRun.Status.RUNNING)
    with single_flight(replay_lock_name(run.pk), ttl_seconds=30) as held:
        assert held.acquired
        with pytest.raises(ReplayInvalid, match="only an interrupted, failed or abandoned"):
            replay_resume(ReplayRun.objects.get(pk=run.pk))
        with pytest.raises(CommandError, match="running; stop it first"):
            call_command("replay", "--delete", str(run.pk))
    call_command("replay", "--resume", str(run.pk), stdout=out, stderr=StringIO())
    assert ReplayRun.objects.get(pk=run.pk).status == ReplayRun.Status.DONE
    call_command("replay", "--delete", str(run.pk), stdout=out)
    assert not ReplayRun.objects.exists()
    assert not replay_database_exists(run.pk)
    assert replay_start(run.pk) is None  # a task for a deleted run does nothing


def test_a_replay_database_is_its_own(runs: list[ReplayRun]) -> None:
    live_session(3)
    run = replay(runs, 3)
    with replay_database(run.pk):
        # the run's own schema (PostgreSQL) or file (SQLite): live tables are not reachable
        assert MarketBar.objects.filter(close_time__gt=T0 + timedelta(minutes=3)).count() == 0
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW search_path")
                assert cursor.fetchone()[0] == f"replay_{run.pk}"
        with pytest.raises(RuntimeError, match="already in use"), replay_database(run.pk):
            pass
    replay_database_drop(run.pk)
    with pytest.raises(ReplayDatabaseMissing), replay_database(run.pk):
        MarketBar.objects.count()


def test_a_replay_from_the_middle_of_a_session_puts_live_s_open_book_in_opening_position(
    runs: list[ReplayRun],
) -> None:
    live_session(40)
    start = T0 + timedelta(minutes=20) - MS
    end = T0 + timedelta(minutes=39) - MS
    run = replay_create(start=start, end=end, symbols=["BTCUSDT"], actor="test")
    runs.append(run)
    replay_start(run.pk)
    run.refresh_from_db()
    assert run.status == ReplayRun.Status.DONE, run.error

    report = divergence_report(run)

    # independently: live's position at the start, marked from the start's close to the end's
    held = sum(
        (f.quantity if f.side == "BUY" else -f.quantity)
        for f in Fill.objects.filter(filled_at__lte=start)
    )
    assert held != 0  # the session holds a position by then
    close_at = {
        bar.close_time: bar.close for bar in MarketBar.objects.filter(close_time__in=[start, end])
    }
    carried_fills = Fill.objects.filter(
        filled_at__gt=start,
        filled_at__lte=end + 2 * timedelta(minutes=1),
        order__decided_at__lte=start,
    )
    carried = sum(
        (
            (f.quantity if f.side == "BUY" else -f.quantity) * (close_at[end] - f.price) - f.fee
            for f in carried_fills
        ),
        Decimal(0),
    )
    assert report.causes["opening_position"] == -(
        held * (close_at[end] - close_at[start]) + carried
    )
    assert sum(report.causes.values(), Decimal(0)) == report.gap
    assert run.settings["initial_nav"] == str(
        NavPoint.objects.filter(at__lte=start).order_by("-at").values_list("nav", flat=True)[0]
    )
    assert run.settings["initial_nav_from"] == "live NAV"


def _decision(bar_minute: int) -> Decision:
    return Decision(
        key=("BTCUSDT", "momentum", "BUY"),
        decided_at=T0 + timedelta(minutes=bar_minute),
        signal_id=None,
        order_id=None,
        status="routed",
        reason="",
    )


def test_matching_pairs_the_closest_decisions_first() -> None:
    # live decided on bars 0 and 2, the replay on bar 2 only: the exact pair wins, and the
    # bar-0 decision is live's alone (not a two-bar "delay" plus a false live-only)
    early, exact = _decision(0), _decision(2)
    replayed = _decision(2)
    pairs, live_only, replay_only = _match([early, exact], [replayed])
    assert pairs == [(exact, replayed)]
    assert live_only == [early]
    assert replay_only == []
    # beyond the tolerance nothing pairs
    far = _decision(5)
    pairs, live_only, replay_only = _match([early], [far])
    assert pairs == []
    assert (live_only, replay_only) == ([early], [far])


def test_the_task_runs_a_replay_on_the_ml_queue_through_a_real_worker(
    runs: list[ReplayRun], celery_worker_process: Any
) -> None:
    from tradingsite.celery import app

    assert app.amqp.router.route({}, "routing.tasks.replay_task")["queue"].name == "ml"
    live_session(10)
    run = replay_create(
        start=T0 - MS, end=T0 + timedelta(minutes=9) - MS, symbols=["BTCUSDT"], actor="test"
    )
    runs.append(run)
    replay_task.delay(run_id=run.pk)

    def done() -> bool:
        run.refresh_from_db()
        return run.status in (ReplayRun.Status.DONE, ReplayRun.Status.FAILED)

    wait_for(done, timeout=120, what="the worker to finish the replay")
    assert run.status == ReplayRun.Status.DONE, run.error
    assert run.bars_done == 10
    live = trades()
    with replay_database(run.pk):
        assert trades() == live
    assert "routing.tasks.replay_task" in celery_worker_process.log()
