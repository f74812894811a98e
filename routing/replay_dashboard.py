"""What the Replays tab, a replay's Router Health and its divergence page show, and the
operators' controls of replays (the dashboard's forms and the API share them).

The work is ``routing.replay`` (runs) and ``routing.divergence`` (the report); this module
only reads them for pages and records who asked for what. A replay's figures are read inside
its own database (``replay_scope``), never beside live rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from routing.dashboard import router_health_context
from routing.divergence import CAUSES, divergence_report
from routing.executor import BAR_INTERVAL
from routing.health import DEFAULT_WINDOW, WINDOW_KEYS, WINDOWS, router_health_summary
from routing.models import MarketBar, ReplayRun
from routing.replay import (
    ReplayInvalid,
    replay_as_dict,
    replay_create,
    replay_delete,
    replay_push,
    replay_resume,
    replay_stop,
)
from routing.tasks import replay_task
from tradingsite.accounts import audit_log
from tradingsite.display import NO_VALUE
from tradingsite.replaydb import replay_database, replay_database_exists

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

RUNS_LISTED = 50  # on the Replays tab (the API pages through all of them)
DIVERGENCE_ROWS = 200  # trades on the divergence page (the CSV has every one)
HEALTH_WINDOW = "all"  # a run's router health: its whole period
MAX_ID = 2**31 - 1
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
REPLAY_FORM_FIELDS = ("start", "end", "symbols", "initial_nav", "slippage_bps")
REPLAY_FORM_SESSION_KEY = "replay_form"  # what a refused form had, shown again once

CAUSE_NOTES = {
    "live_only": "decisions that traded live only (the replay had no such signal, or risk "
    "refused it there)",
    "replay_only": "decisions that traded in the replay only (live had no such signal, or "
    "risk refused it live)",
    "sizing": "a matched decision traded a different quantity",
    "delay": "the market moved between the live fill and the replay's",
    "execution": "the rest of the price difference of matched fills (slippage)",
    "fees": "fees of matched fills",
    "funding": "funding payments",
    "opening_position": "the position live already held at the start (a replay starts flat)",
}
assert set(CAUSE_NOTES) == set(CAUSES), "every cause is explained"


def replay_url(run: ReplayRun) -> str:
    return reverse("api-replay", args=[run.pk])


# --- reading a replay's figures --------------------------------------------------------------


def replay_done(run_id: object) -> ReplayRun:
    """The done replay ``run_id`` names (``?run=`` of the Router Health page and its
    endpoints); ``ReplayInvalid("run", ...)`` when there is no such run or it is not done."""
    try:
        pk = int(str(run_id).strip())
    except ValueError:
        raise ReplayInvalid("run", f"{run_id!r} is not a replay id") from None
    run = ReplayRun.objects.filter(pk=pk).first() if 0 < pk <= MAX_ID else None
    if run is None:
        raise ReplayInvalid("run", f"there is no replay {pk}")
    if run.status != ReplayRun.Status.DONE:
        raise ReplayInvalid(
            "run", f"replay {pk} is {run.status}: its figures can be read once it is done"
        )
    if not replay_database_exists(run.pk):
        raise ReplayInvalid("run", f"replay {pk} has no database any more (run it again)")
    return run


@contextmanager
def replay_scope(run: ReplayRun | None) -> Iterator[None]:
    """Reads in the block come from ``run``'s database (live's when ``run`` is None). Not
    inside a live transaction (``tradingsite.replaydb``)."""
    if run is None:
        yield
        return
    with replay_database(run.pk):
        yield


def replay_health(run: ReplayRun) -> tuple[dict[str, Any] | None, str]:
    """The run's router health over its whole period (its own database), or None with why."""
    if not replay_database_exists(run.pk):
        when = " yet (made when it starts)" if run.started_at is None else " any more"
        return None, f"The replay is {run.status} and has no database{when}."
    with replay_database(run.pk):
        summary = router_health_summary(HEALTH_WINDOW)
    if summary is None:
        return None, f"The replay is {run.status}: its router health is computed when it is done."
    return summary, ""


def replay_detail(run: ReplayRun) -> dict[str, Any]:
    """A run as the API's detail shows it: the run and its router health."""
    health, note = replay_health(run)
    return {**replay_as_dict(run), "url": replay_url(run), "router_health": health, "note": note}


# --- pages ---------------------------------------------------------------------------------


def replay_shown(run: ReplayRun) -> dict[str, Any]:
    """A run as pages show it: what pushes carry, and its period in minutes (UTC)."""
    period = f"{run.start:%Y-%m-%d %H:%M} to {run.end:%Y-%m-%d %H:%M}"
    return {**replay_as_dict(run), "period": period}


def replay_runs(*, limit: int = RUNS_LISTED) -> list[dict[str, Any]]:
    """The newest runs (the Replays tab's script shows a push the same way)."""
    return [replay_shown(run) for run in ReplayRun.objects.order_by("-id")[:limit]]


def stored_bars() -> list[dict[str, Any]]:
    """First and last stored one-minute bar close of each traded symbol (what can be
    replayed): two index lookups per symbol."""
    ranges = []
    for symbol in settings.SYMBOLS:
        closes = MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL).values_list(
            "close_time", flat=True
        )
        first = closes.order_by("open_time").first()
        last = closes.order_by("-open_time").first()
        ranges.append({"symbol": symbol, "first": first, "last": last})
    return ranges


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_LOCAL)


def replays_context(refused: dict[str, str] | None = None) -> dict[str, Any]:
    """The Replays tab: the runs, what bars are stored, and the start form's values (what a
    refused request had, else the last day of stored bars)."""
    bars = stored_bars()
    lasts = [row["last"] for row in bars if row["last"] is not None]
    end = max(lasts) if lasts else timezone.now()
    form = {
        "start": _minute(end - timedelta(days=1)),
        "end": _minute(end),
        "symbols": ",".join(settings.SYMBOLS),
        "initial_nav": "",
        "slippage_bps": "",
    }
    form.update({k: str(v) for k, v in (refused or {}).items() if k in REPLAY_FORM_FIELDS})
    return {"runs": replay_runs(), "stored_bars": bars, "form": form}


def replay_choices() -> list[dict[str, Any]]:
    """The Router Health page's run selector: the done runs, newest first."""
    done = ReplayRun.objects.filter(status=ReplayRun.Status.DONE).order_by("-id")
    choices = []
    for run in done:
        shown = replay_shown(run)
        symbols = ", ".join(shown["symbols"])
        choices.append({"id": run.pk, "label": f"replay {run.pk}: {symbols} {shown['period']}"})
    return choices


def router_health_page(window: str, run_id: str) -> dict[str, Any]:
    """The Router Health tab: live's figures, or with ``run_id`` a done replay's, read in its
    own database (its windows end at the replay's end); a selector of the done runs."""
    if not run_id:
        return {**router_health_context(window), "run": None, "replays": replay_choices()}
    try:
        run = replay_done(run_id)
    except ReplayInvalid as error:
        return {
            "windows": WINDOWS,
            "window": window if window in WINDOW_KEYS else DEFAULT_WINDOW,
            "summary": None,
            "recent_fills": [],
            "run": {"id": run_id},
            "run_error": error.message,
            "replays": replay_choices(),
        }
    with replay_database(run.pk):
        context = router_health_context(window)
    return {**context, "run": replay_shown(run), "replays": replay_choices()}


def _percent(share: float | None) -> str:
    return NO_VALUE if share is None else f"{round(share * 100, 1) + 0.0:.1f}%"  # never -0.0%


def _second(moment: str | None) -> str:
    """An ISO time of the report as the page shows it: to the second, UTC."""
    return NO_VALUE if moment is None else moment[:19].replace("T", " ")


def divergence_context(run: ReplayRun) -> dict[str, Any]:
    """The divergence page: live vs replay PnL, the causes of the gap, the first trades."""
    context: dict[str, Any] = {"run": replay_shown(run), "report": None, "causes": []}
    try:
        replay_done(run.pk)
    except ReplayInvalid as error:
        context["not_ready"] = f"{error.message[0].upper()}{error.message[1:]}."
        return context
    report = divergence_report(run).as_dict()
    context["causes"] = [
        {
            "name": name,
            "note": CAUSE_NOTES[name],
            "pnl": value["pnl"],
            "share": _percent(value["share"]),
        }
        for name, value in report["causes"].items()
    ]
    context["trades"] = [
        {
            **row,
            "live_at": _second(row["live_decided_at"]),
            "replay_at": _second(row["replay_decided_at"]),
        }
        for row in report["trades"][:DIVERGENCE_ROWS]
    ]
    context["trades_total"] = len(report["trades"])
    context["report"] = report
    return context


# --- operators' controls (dashboard and API), audited ---------------------------------------


class ReplayNotQueued(RuntimeError):
    """The run is recorded but its task could not be queued (the broker is unreachable): it
    is left interrupted, to be resumed once the broker is back."""

    def __init__(self, run: ReplayRun) -> None:
        super().__init__(
            f"Replay {run.pk} is recorded but NOT queued: the broker is unreachable; resume it "
            "once the broker is back."
        )
        self.run = run


def _queue(run: ReplayRun) -> None:
    """Queue the run's task once the transaction commits (the ML queue). When the broker is
    unreachable the run is left interrupted, never queued without a task: ``ReplayNotQueued``
    (raised as the transaction ends)."""

    def send() -> None:
        try:
            result = replay_task.delay(run_id=run.pk)
        except OperationalError as error:
            logger.warning("replay %s was not queued: %s", run.pk, error)
            run.refresh_from_db()
            replay_stop(run)
            replay_push(run)
            raise ReplayNotQueued(run) from error
        ReplayRun.objects.filter(pk=run.pk).update(task_id=str(result.id))

    transaction.on_commit(send)


def operator_replay_start(
    *,
    user: User,
    start: datetime,
    end: datetime,
    symbols: Sequence[str],
    initial_nav: Decimal | None = None,
    slippage_bps: Decimal | None = None,
    via: str = "dashboard",
) -> ReplayRun:
    """Record a replay and queue it (``ReplayInvalid`` for a request that cannot run:
    nothing is recorded then; ``ReplayNotQueued`` when the broker is unreachable), logged in
    the admin's log with who asked for what."""
    with transaction.atomic():
        run = replay_create(
            start=start,
            end=end,
            symbols=symbols,
            actor=f"{user.get_username()} ({via})",
            initial_nav=initial_nav,
            slippage_bps=slippage_bps,
        )
        audit_log(
            user,
            run,
            f"replay started from the {via}: {', '.join(run.symbols)} "
            f"{run.start.isoformat()} to {run.end.isoformat()} ({run.bars_total} bars)",
        )
        replay_push(run)
        _queue(run)
    run.refresh_from_db()
    return run


def operator_replay_stop(*, user: User, run: ReplayRun, via: str = "dashboard") -> ReplayRun:
    """Ask a queued or running run to stop after its current chunk (``ReplayInvalid`` when it
    is neither)."""
    with transaction.atomic():
        replay_stop(run)
        audit_log(user, run, f"replay stop requested from the {via}")
        replay_push(run)
    return run


def operator_replay_resume(*, user: User, run: ReplayRun, via: str = "dashboard") -> ReplayRun:
    """Queue an interrupted or failed run (or one whose worker died) again; it goes on from
    its cursor."""
    with transaction.atomic():
        replay_resume(run)
        audit_log(user, run, f"replay resumed from the {via}")
        replay_push(run)
        _queue(run)
    run.refresh_from_db()
    return run


def operator_replay_delete(*, user: User, run: ReplayRun, via: str = "dashboard") -> None:
    """Remove a run no process is running, with its database (``ReplayInvalid`` while one
    does); audited before it goes."""
    with transaction.atomic():
        audit_log(user, run, f"replay deleted from the {via}")
        replay_push(run, deleted=True)  # the run as it was (sent once the delete commits)
        replay_delete(run)  # refused while it runs: the log entry is rolled back with it
