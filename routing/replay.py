"""Replay: the live executor over stored bars, in simulated time (SPEC §6).

Not a second backtest engine: a replay calls ``routing.executor.executor_tick`` — the same
steps as a live tick (signals, ML predictions, sizing, pre-trade checks, autotune, routing,
fills, funding, positions, NAV) — once per bar close, with a replay context:

- the **clock** is the bar's close time + 1 ms, so decisions see exactly the closed bars;
- the **venue** is the paper venue fed with the stored bars (``routing.paper``): a market
  order fills at the next bar's open plus slippage, stops trigger on the bar's range,
  funding settles at each symbol's interval;
- the **database** is the run's own (``tradingsite.replaydb``): its orders, fills, NAV and
  router health never mix with live rows. The live side keeps the ``ReplayRun`` row (what
  was asked, progress, summary).

The replay database starts with copies of what configures trading — limits (kill switch
off: a live control), signal sources, instruments, the ML settings and model registry — as
they are when the run is created; the state (risk state, positions, NAV) starts fresh from
the starting NAV. ML predictions in replay are scored synchronously on the tick that follows
the bar's close, only by the model that was active in live at that moment and only when its
training window ended before the bar (``mlinsights.services.replay_scoring``).

Writes are batched: ``CHUNK_BARS`` ticks share one transaction, with the paper book and the
run's cursor saved at its end, so an interrupted run (Ctrl-C, a lost worker) loses at most
one chunk and resumes from the cursor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import F, Model
from django.db.utils import DatabaseError
from django.utils import timezone

from mlinsights.models import MLConfig, ModelVersion
from risk.models import RiskLimit
from routing.executor import BAR_INTERVAL, TickContext, executor_tick
from routing.health import router_health_recompute
from routing.models import (
    Fill,
    Instrument,
    MarketBar,
    NavPoint,
    Order,
    ReplayRun,
    Signal,
    SignalSource,
)
from routing.paper import (
    DEFAULT_SYMBOLS,
    GENERIC_SYMBOL,
    PaperConfig,
    PaperSymbol,
    PaperVenue,
)
from routing.venues import VenueBar
from tradingsite.live import live_push
from tradingsite.locks import lock_held, single_flight
from tradingsite.replaydb import (
    replay_database,
    replay_database_create,
    replay_database_drop,
    replay_database_exists,
    replay_storage,
)

logger = logging.getLogger(__name__)

REPLAY_ACCOUNT = "replay"
WARMUP = timedelta(hours=24)  # bars before the start the first decisions see (<= bar_history)
AFTER_END = timedelta(minutes=5)  # bars after the end the last decisions fill on
MAX_SYMBOL_BARS = 1_200_000  # bars held in memory per run (symbols x bars)
CHUNK_BARS = 250  # ticks per transaction
MAX_BARS = 60 * 24 * 400  # decision points per run (about 13 months of one-minute bars)
BAR = timedelta(minutes=1)
BAR_MS = 60_000
DEFAULT_SLIPPAGE_BPS = Decimal("2")
DEFAULT_NAV = Decimal("10000")
FEE_DEFAULTS = {"taker_fee": Decimal("0.0005"), "maker_fee": Decimal("0.0002")}


class ReplayInvalid(ValueError):
    """A replay request that cannot run; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ReplayInterrupted(Exception):
    """The run was asked to stop; it resumes from its cursor."""


# --- creating a run ----------------------------------------------------------------------


def _moment(value: datetime, field: str) -> datetime:
    if timezone.is_naive(value):
        raise ReplayInvalid(field, "give a time zone (UTC), e.g. 2026-01-01T00:00:00Z")
    return value.astimezone(UTC)


def _decimal_setting(value: Decimal | str | None, field: str, default: Decimal) -> Decimal:
    if value is None:
        return default
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ReplayInvalid(field, f"{value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise ReplayInvalid(field, "must be a finite number >= 0")
    return number


def _live_nav_at(moment: datetime) -> Decimal | None:
    return (
        NavPoint.objects.filter(at__lte=moment)
        .order_by("-at", "-id")
        .values_list("nav", flat=True)
        .first()
    )


def replay_create(
    *,
    start: datetime,
    end: datetime,
    symbols: Sequence[str],
    actor: str,
    initial_nav: Decimal | str | None = None,
    slippage_bps: Decimal | str | None = None,
) -> ReplayRun:
    """Validate a request and record the run (queued). Bars are the stored one-minute bars;
    the starting NAV defaults to live's NAV at ``start`` (else the paper default)."""
    start, end = _moment(start, "start"), _moment(end, "end")
    if end <= start:
        raise ReplayInvalid("end", "must be after start")
    if end > timezone.now():
        raise ReplayInvalid("end", "cannot replay the future")
    chosen = [str(symbol).strip().upper() for symbol in symbols if str(symbol).strip()]
    if not chosen:
        raise ReplayInvalid("symbols", "name at least one symbol")
    if len(set(chosen)) != len(chosen):
        raise ReplayInvalid("symbols", "a symbol is named twice")
    for symbol in chosen:
        if not MarketBar.objects.filter(
            symbol=symbol, interval=BAR_INTERVAL, close_time__gte=start, close_time__lte=end
        ).exists():
            raise ReplayInvalid(
                "symbols", f"no stored {BAR_INTERVAL} bars of {symbol} in that period"
            )
        if (
            MarketBar.objects.filter(
                symbol=symbol, interval=BAR_INTERVAL, close_time__gte=start - WARMUP
            )
            .filter(close_time__lte=end)
            .exclude(close_time=F("open_time") + timedelta(milliseconds=BAR_MS - 1))
            .exists()
        ):
            raise ReplayInvalid(
                "symbols",
                f"stored {symbol} bars in that period are not one-minute klines (a close must "
                "be 59.999 s after its open, as Binance's)",
            )
    live_nav = _live_nav_at(start)
    nav = _decimal_setting(initial_nav, "initial_nav", live_nav or DEFAULT_NAV)
    if nav <= 0:
        raise ReplayInvalid("initial_nav", "must be > 0")
    slippage = _decimal_setting(slippage_bps, "slippage_bps", DEFAULT_SLIPPAGE_BPS)
    total = len(_decision_times(chosen, start, end))
    if total > MAX_BARS:
        raise ReplayInvalid("end", f"{total} bars to replay; at most {MAX_BARS} per run")
    if total * len(chosen) > MAX_SYMBOL_BARS:
        raise ReplayInvalid(
            "symbols", f"{total} bars x {len(chosen)} symbols; at most {MAX_SYMBOL_BARS} per run"
        )
    run = ReplayRun.objects.create(
        symbols=chosen,
        start=start,
        end=end,
        created_by=actor,
        created_at=timezone.now(),
        bars_total=total,
        settings={
            "initial_nav": str(nav),
            "initial_nav_from": (
                "given" if initial_nav is not None else "live NAV" if live_nav else "default"
            ),
            "slippage_bps": str(slippage),
            **{name: str(value) for name, value in FEE_DEFAULTS.items()},
            "warmup_minutes": int(WARMUP.total_seconds() // 60),
        },
    )
    run.storage = replay_storage(run.pk)
    run.save(update_fields=["storage"])
    replay_database_drop(run.pk)  # an older run's, should ids have been reused
    return run


def _decision_times(symbols: Sequence[str], start: datetime, end: datetime) -> list[datetime]:
    """Every distinct bar close in the period (a tick follows each)."""
    return sorted(
        set(
            MarketBar.objects.filter(
                symbol__in=symbols,
                interval=BAR_INTERVAL,
                close_time__gte=start,
                close_time__lte=end,
            ).values_list("close_time", flat=True)
        )
    )


# --- the replay database's starting rows ------------------------------------------------------


def _copy(rows: Sequence[Model]) -> None:
    """Rows with their live ids (the registry's foreign keys point at them); the table's id
    sequence then continues after them (PostgreSQL does not move it for given ids)."""
    if not rows:
        return
    model = type(rows[0])
    model._default_manager.bulk_create(rows)
    statements = connection.ops.sequence_reset_sql(no_style(), [model])
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def _configuration() -> dict[str, list[Any]]:
    """What configures trading, read from live (copied into the replay database); live's
    controls and states are not configuration: the kill switch is off and no symbol is
    halted in a replay."""
    limits = list(RiskLimit.objects.all())
    for limit in limits:
        limit.kill_switch = False
    instruments = list(Instrument.objects.all())
    for instrument in instruments:
        instrument.trading_halted, instrument.halt_reason = False, ""
    return {
        "limits": limits,
        "sources": list(SignalSource.objects.all()),
        "instruments": instruments,
        "ml": list(MLConfig.objects.all()),
        "models": list(ModelVersion.objects.order_by("version")),
    }


def _paper_config(run: ReplayRun, instruments: Sequence[Instrument]) -> PaperConfig:
    known = {row.symbol: row for row in instruments}
    symbols: dict[str, PaperSymbol] = {}
    for symbol in run.symbols:
        row = known.get(symbol)
        base = DEFAULT_SYMBOLS.get(symbol, GENERIC_SYMBOL)
        symbols[symbol] = (
            base
            if row is None
            else PaperSymbol(
                start_price=base.start_price,
                tick_size=row.tick_size,
                step_size=row.step_size,
                funding_interval_hours=row.funding_interval_hours,
                min_notional=row.min_notional,
                max_qty=row.max_qty,
            )
        )
    values = run.settings
    return PaperConfig(
        symbols=symbols,
        taker_fee=Decimal(values["taker_fee"]),
        maker_fee=Decimal(values["maker_fee"]),
        slippage_bps=Decimal(values["slippage_bps"]),
        starting_wallet=Decimal(values["initial_nav"]),
        bar_history=int(WARMUP.total_seconds() // 60) + 60,
    )


def _bars(run: ReplayRun) -> dict[str, list[VenueBar]]:
    """The stored bars the run replays (with the warm-up before its start), from live."""
    bars: dict[str, list[VenueBar]] = {}
    for symbol in run.symbols:
        rows = MarketBar.objects.filter(
            symbol=symbol,
            interval=BAR_INTERVAL,
            close_time__gte=run.start - WARMUP,
            # a few bars past the end, so that the last decisions fill (no tick runs there)
            close_time__lte=run.end + AFTER_END,
        ).order_by("open_time")
        bars[symbol] = [
            VenueBar(
                open_time_ms=_ms(open_time),
                close_time_ms=_ms(close_time),
                open=o,
                high=h,
                low=low,
                close=c,
                volume=v,
            )
            for open_time, close_time, o, h, low, c, v in rows.values_list(
                "open_time", "close_time", "open", "high", "low", "close", "volume"
            ).iterator(chunk_size=5000)
        ]
        odd = next(
            (b for b in bars[symbol] if b.close_time_ms - b.open_time_ms != BAR_MS - 1), None
        )
        if odd is not None:
            raise ReplayInvalid(
                "symbols",
                f"a stored {symbol} bar opening at {odd.open_time_ms} ms is not a one-minute "
                "kline (its close must be 59.999 s after its open, as Binance's)",
            )
    return bars


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, tz=UTC)


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayProgress:
    run_id: int
    bars_done: int
    bars_total: int
    cursor: datetime | None
    bars_per_second: float


Progress = Callable[[ReplayProgress], None]


def _set_status(run: ReplayRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    ReplayRun.objects.filter(pk=run.pk).update(**fields)


def replay_execute(
    run: ReplayRun,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    chunk_bars: int | None = None,
    renew: Callable[[], None] = lambda: None,
) -> ReplayRun:
    """Run (or resume) ``run`` to its end; returns it done. Raises ``ReplayInterrupted`` when
    ``should_stop`` says so between chunks (or on KeyboardInterrupt): the run is left
    ``interrupted`` at its last saved chunk. Any other error leaves it ``failed`` with the
    error (also resumable) and is raised."""
    run.refresh_from_db()
    if run.status == ReplayRun.Status.DONE:
        return run
    if run.status == ReplayRun.Status.RUNNING and run.started_at is not None:
        logger.warning("replay %s was left running (its worker stopped): resuming", run.pk)
    _set_status(run, status=ReplayRun.Status.RUNNING, error="", started_at=timezone.now())
    try:
        _execute(
            run,
            progress=progress,
            should_stop=should_stop,
            chunk_bars=chunk_bars or CHUNK_BARS,
            renew=_throttled(renew),
        )
    except (KeyboardInterrupt, ReplayInterrupted):
        _set_status(run, status=ReplayRun.Status.INTERRUPTED)
        raise ReplayInterrupted(f"replay {run.pk} interrupted at {run.cursor}") from None
    except Exception as error:
        logger.exception("replay %s failed", run.pk)
        _set_status(run, status=ReplayRun.Status.FAILED, error=f"{type(error).__name__}: {error}")
        raise
    return run


def _prepared(run: ReplayRun) -> bool:
    """Whether the run's database is this run's, complete (its copy of the run row, written
    last in the preparing transaction, is there with the same creation time)."""
    if not replay_database_exists(run.pk):
        return False
    try:
        with replay_database(run.pk):
            copy = ReplayRun.objects.filter(pk=run.pk).values_list("created_at", flat=True)
            return copy.first() == run.created_at
    except DatabaseError:  # half made: a table is missing
        return False


def _prepare(run: ReplayRun) -> None:
    """The run's database with its starting rows (once; a resumed run keeps its own). One
    left half made by a crash, or by an older run with the same id, is made again."""
    if _prepared(run):
        return
    replay_database_drop(run.pk)
    config = _configuration()
    try:
        replay_database_create(run.pk)
        with replay_database(run.pk), transaction.atomic():
            for rows in config.values():
                _copy(rows)
            # The run's own copy of its row carries the cursor, saved with each chunk.
            ReplayRun.objects.create(
                **{
                    field.attname: getattr(run, field.attname)
                    for field in ReplayRun._meta.concrete_fields
                }
            )
    except BaseException:
        replay_database_drop(run.pk)
        raise


def _throttled(renew: Callable[[], None], *, every: float = 15.0) -> Callable[[], None]:
    last = time.monotonic()

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            renew()
            last = time.monotonic()

    return maybe


def _execute(
    run: ReplayRun,
    *,
    progress: Progress | None,
    should_stop: Callable[[], bool],
    chunk_bars: int,
    renew: Callable[[], None],
) -> None:
    _prepare(run)
    renew()
    bars = _bars(run)
    renew()
    with replay_database(run.pk):
        saved = ReplayRun.objects.get(pk=run.pk)
        instruments = list(Instrument.objects.filter(symbol__in=run.symbols))
    times = _decision_times(run.symbols, run.start, run.end)
    if saved.cursor is not None:
        times = [moment for moment in times if moment > saved.cursor]
    done = saved.bars_done
    _set_status(run, bars_done=done, cursor=saved.cursor)
    config = _paper_config(run, instruments)
    missing = [symbol for symbol, seq in bars.items() if not seq]
    if missing:
        raise ReplayInvalid("symbols", f"no stored bars of {', '.join(missing)} any more")
    clock = _Clock(min(seq[0].open_time_ms for seq in bars.values()))
    with replay_database(run.pk):
        venue = PaperVenue.load(
            name=REPLAY_ACCOUNT, config=config, clock_ms=clock, replay_bars=bars
        )
    context = TickContext(
        clock=clock.now, venue=venue, symbols=tuple(run.symbols), run=f"replay-{run.pk}"
    )
    seconds = float(run.summary.get("seconds", 0.0)) if saved.cursor is not None else 0.0
    for offset in range(0, len(times), chunk_bars):
        if should_stop():
            raise ReplayInterrupted
        chunk = times[offset : offset + chunk_bars]
        began = time.perf_counter()
        with replay_database(run.pk), transaction.atomic():
            for moment in chunk:
                clock.ms = _ms(moment) + 1
                executor_tick(context, renew=renew)
            venue.save()
            ReplayRun.objects.filter(pk=run.pk).update(
                cursor=chunk[-1], bars_done=F("bars_done") + len(chunk)
            )
        spent = time.perf_counter() - began
        seconds += spent
        done += len(chunk)
        rate = len(chunk) / max(spent, 1e-9)
        _set_status(
            run,
            bars_done=done,
            cursor=chunk[-1],
            bars_per_second=round(rate, 1),
            summary={**run.summary, "seconds": round(seconds, 3)},
        )
        if progress is not None:
            progress(ReplayProgress(run.pk, done, run.bars_total, chunk[-1], rate))
    renew()
    with replay_database(run.pk):
        router_health_recompute(now=run.end)
        summary = replay_summary(run)
    _set_status(
        run,
        status=ReplayRun.Status.DONE,
        finished_at=timezone.now(),
        summary={**summary, "seconds": run.summary.get("seconds", 0.0)},
    )


def replay_summary(run: ReplayRun) -> dict[str, Any]:
    """Headline figures of the run (read inside its database)."""
    last_nav = NavPoint.objects.order_by("-at", "-id").values_list("nav", flat=True).first()
    initial = Decimal(run.settings["initial_nav"])
    return {
        "signals": Signal.objects.count(),
        "orders": Order.objects.count(),
        "fills": Fill.objects.count(),
        "final_nav": str(last_nav if last_nav is not None else initial),
        "pnl": str((last_nav - initial) if last_nav is not None else Decimal(0)),
    }


LOCK_SECONDS = 600  # renewed after every chunk


def replay_as_dict(run: ReplayRun) -> dict[str, Any]:
    """What pages, pushes and the API show of a run."""
    return {
        "id": run.pk,
        "symbols": list(run.symbols),
        "start": run.start.isoformat(),
        "end": run.end.isoformat(),
        "status": run.status,
        "created_by": run.created_by,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "bars_total": run.bars_total,
        "bars_done": run.bars_done,
        "progress": round(run.bars_done / run.bars_total, 4) if run.bars_total else 0.0,
        "cursor": run.cursor.isoformat() if run.cursor else None,
        "bars_per_second": run.bars_per_second,
        "settings": run.settings,
        "summary": run.summary,
        "error": run.error,
        "stop_requested": run.stop_requested,
    }


def replay_push(run: ReplayRun, **extra: Any) -> None:
    """The run as it is now, to open pages (after the transaction commits)."""
    live_push(event="routing.replay", data={**replay_as_dict(run), **extra})


def replay_start(
    run_id: int,
    *,
    progress: Progress | None = None,
    also_renew: Callable[[], None] = lambda: None,
) -> ReplayRun | None:
    """Run or resume ``run_id`` in this process, one process per run (a lock): None when
    another process is running it. Progress is pushed to open pages after every chunk; an
    operator's stop request (``replay_stop``) ends it after the current chunk."""
    with single_flight(replay_lock_name(run_id), ttl_seconds=LOCK_SECONDS) as lock:
        if not lock.acquired:
            logger.warning("replay %s is already running elsewhere", run_id)
            return None
        run = ReplayRun.objects.filter(pk=run_id).first()
        if run is None:  # deleted while its task waited
            logger.warning("replay %s no longer exists", run_id)
            return None
        if run.stop_requested:  # stopped before it started: resumed by ``replay_resume``
            _set_status(run, status=ReplayRun.Status.INTERRUPTED)
            return run

        def on_progress(step: ReplayProgress) -> None:
            replay_push(run)
            if progress is not None:
                progress(step)

        def should_stop() -> bool:
            return ReplayRun.objects.filter(pk=run_id, stop_requested=True).exists()

        try:

            def renew() -> None:
                lock.renew()
                also_renew()

            return replay_execute(run, progress=on_progress, should_stop=should_stop, renew=renew)
        finally:
            run.refresh_from_db()
            replay_push(run)


def replay_stop(run: ReplayRun) -> None:
    """Ask a queued or running run to stop after its current chunk (it can be resumed)."""
    if run.status not in (ReplayRun.Status.QUEUED, ReplayRun.Status.RUNNING):
        raise ReplayInvalid("status", f"the replay is {run.status}, not running")
    ReplayRun.objects.filter(pk=run.pk).update(stop_requested=True)
    if run.status == ReplayRun.Status.QUEUED:
        ReplayRun.objects.filter(pk=run.pk, status=ReplayRun.Status.QUEUED).update(
            status=ReplayRun.Status.INTERRUPTED
        )
    run.refresh_from_db()


def replay_lock_name(run_id: int) -> str:
    """The lock a process running ``run_id`` holds (renewed as it works)."""
    return f"replay-{run_id}"


def replay_resume(run: ReplayRun) -> None:
    """Make an interrupted or failed run — or one left running by a worker that died (no
    process holds its lock) — ready to go on from its cursor (queued)."""
    orphaned = run.status == ReplayRun.Status.RUNNING and not lock_held(replay_lock_name(run.pk))
    if run.status not in (ReplayRun.Status.INTERRUPTED, ReplayRun.Status.FAILED) and not orphaned:
        raise ReplayInvalid(
            "status",
            f"the replay is {run.status}: only an interrupted, failed or abandoned one resumes",
        )
    _set_status(run, status=ReplayRun.Status.QUEUED, stop_requested=False, error="")


def replay_delete(run: ReplayRun) -> None:
    """Remove a run that no process is running, with its database."""
    if lock_held(replay_lock_name(run.pk)):
        raise ReplayInvalid("status", "the replay is running; stop it first")
    replay_database_drop(run.pk)
    run.delete()
