from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from routing.models import ReplayRun
from routing.replay import (
    Progress,
    ReplayInterrupted,
    ReplayInvalid,
    ReplayProgress,
    replay_create,
    replay_delete,
    replay_resume,
    replay_start,
)


def _moment(text: str) -> datetime:
    """A date (midnight UTC) or an ISO time; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{text!r} is not a date (2026-01-01) or time (ISO 8601)") from None
    if isinstance(moment, date) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class Command(BaseCommand):
    help = (
        "Replay the executor over stored bars (its own run, never mixed with live data). "
        "Interrupt with Ctrl-C and go on later with --resume ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", help="First bar close (date or ISO time, UTC)")
        parser.add_argument("--to", dest="end", help="Last bar close (date or ISO time, UTC)")
        parser.add_argument("--symbols", help="Comma-separated, e.g. BTCUSDT,ETHUSDT")
        parser.add_argument("--initial-nav", help="Starting NAV (default: live's NAV then)")
        parser.add_argument("--slippage-bps", help="Paper fill slippage (default 2)")
        parser.add_argument("--resume", type=int, metavar="ID", help="Go on with run ID")
        parser.add_argument(
            "--delete", type=int, metavar="ID", help="Remove run ID and its database"
        )
        parser.add_argument("--actor", default="cli")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["delete"] is not None:
            self._delete(options["delete"])
            return
        try:
            run = self._run(options)
        except ReplayInvalid as error:
            raise CommandError(f"{error.field}: {error.message}") from None
        try:
            started = replay_start(run.pk, progress=self._progress(run))
        except ReplayInterrupted as error:
            raise CommandError(
                f"{error}; go on with: manage.py replay --resume {run.pk}", returncode=130
            ) from None
        if started is None:
            raise CommandError(f"replay {run.pk} is being run by another process")
        started.refresh_from_db()
        summary = started.summary
        self.stdout.write(
            f"replay {started.pk} {started.status}: {started.bars_done} bars, "
            f"{summary.get('orders', 0)} orders, {summary.get('fills', 0)} fills, "
            f"PnL {summary.get('pnl', '0')}, {started.bars_per_second:.0f} bars/s "
            f"(storage {started.storage})"
        )

    def _delete(self, run_id: int) -> None:
        run = ReplayRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no replay {run_id}")
        try:
            replay_delete(run)
        except ReplayInvalid as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"replay {run_id} deleted with its database")

    def _run(self, options: dict[str, Any]) -> ReplayRun:
        if options["resume"] is not None:
            if any(options[name] for name in ("start", "end", "symbols")):
                raise CommandError("--resume takes no --from/--to/--symbols (the run has them)")
            run = ReplayRun.objects.filter(pk=options["resume"]).first()
            if run is None:
                raise CommandError(f"no replay {options['resume']}")
            if run.status != ReplayRun.Status.QUEUED:
                replay_resume(run)
            return run
        missing = [
            f"--{name}"
            for name in ("from", "to", "symbols")
            if not options["start" if name == "from" else "end" if name == "to" else name]
        ]
        if missing:
            raise CommandError(f"give {', '.join(missing)} (or --resume ID)")
        return replay_create(
            start=_moment(options["start"]),
            end=_moment(options["end"]),
            symbols=options["symbols"].split(","),
            actor=options["actor"],
            initial_nav=options["initial_nav"],
            slippage_bps=options["slippage_bps"],
        )

    def _progress(self, run: ReplayRun) -> Progress:
        bar = tqdm(total=run.bars_total, initial=run.bars_done, unit="bar", desc=f"replay {run.pk}")

        def update(step: ReplayProgress) -> None:
            bar.update(step.bars_done - bar.n)
            bar.set_postfix_str(f"{step.cursor:%Y-%m-%d %H:%M}" if step.cursor else "")

        return update
