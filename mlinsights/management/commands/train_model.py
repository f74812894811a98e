from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from mlinsights.services import ml_config, model_train
from mlinsights.tasks import TRAIN_LOCK, TRAIN_LOCK_SECONDS
from mlinsights.training import ALGORITHMS, TrainingInvalid
from tradingsite.locks import single_flight

MAX_DAYS = 3650


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{value!r} is not an ISO date or time, e.g. 2026-11-01T00:00Z"
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


class _Progress:
    """One tqdm bar per stage (bars loaded, validation folds, final fit); each step also
    renews the training lock, so a long training keeps it."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm[Any]] = {}
        self.renew: Callable[[], None] = lambda: None

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.renew()
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="step")
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


class Command(BaseCommand):
    help = (
        "Train a model on stored 1m bars with walk-forward validation and register it in "
        "shadow (scored live, not traded, until it beats the active model out of sample). "
        "Unset options come from the ML settings in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbols", help="comma-separated (default: SYMBOLS)")
        parser.add_argument("--days", type=int, help="train on the last N days of bars")
        parser.add_argument("--start", help="window start (ISO), with --end instead of --days")
        parser.add_argument("--end", help="window end (ISO; default now)")
        parser.add_argument("--algorithm", choices=list(ALGORITHMS))
        parser.add_argument("--horizon", type=int, help="label horizon in bars")
        parser.add_argument("--folds", type=int, help="walk-forward folds")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        symbols = [
            symbol.strip().upper()
            for symbol in (options["symbols"] or ",".join(settings.SYMBOLS)).split(",")
            if symbol.strip()
        ]
        unknown = [symbol for symbol in symbols if symbol not in settings.SYMBOLS]
        if unknown:
            raise CommandError(
                f"{', '.join(unknown)} not traded (SYMBOLS: {', '.join(settings.SYMBOLS)})"
            )
        end = _moment(options["end"]) if options["end"] else timezone.now()
        if options["start"] and options["days"]:
            raise CommandError("give --start or --days, not both")
        if options["start"]:
            start = _moment(options["start"])
        else:
            days = options["days"] if options["days"] is not None else ml_config().training_days
            if days < 1:
                raise CommandError(f"--days must be at least 1, got {days}")
            start = end - timedelta(days=days)
        if options["seed"] < 0:
            raise CommandError(f"--seed must be 0 or more, got {options['seed']}")
        if options["days"] is not None and options["days"] > MAX_DAYS:
            raise CommandError(f"--days must be at most {MAX_DAYS}, got {options['days']}")
        for name in ("horizon", "folds"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name} must be at least 1, got {options[name]}")
        progress = _Progress()
        with single_flight(TRAIN_LOCK, ttl_seconds=TRAIN_LOCK_SECONDS) as run:
            if not run.acquired:
                raise CommandError("a training is already running: try again when it is done")
            progress.renew = run.renew
            try:
                version = model_train(
                    symbols=symbols,
                    start=start,
                    end=end,
                    algorithm=options["algorithm"],
                    horizon=options["horizon"],
                    folds=options["folds"],
                    seed=options["seed"],
                    progress=progress,
                )
            except TrainingInvalid as error:
                raise CommandError(str(error)) from None
            finally:
                progress.close()
        metrics = version.metrics
        auc = "n/a" if metrics["auc"] is None else f"{metrics['auc']:.4f}"
        self.stdout.write(
            f"registered model v{version.version} in shadow: {version.algorithm}, "
            f"{version.rows} rows of {', '.join(version.symbols)} from "
            f"{version.train_start:%Y-%m-%d %H:%M} to {version.train_end:%Y-%m-%d %H:%M}, "
            f"out-of-sample AUC {auc}, Brier {metrics['brier']:.4f}, "
            f"hit rate {metrics['hit_rate']:.2%} ({metrics['samples']} predictions), "
            f"{version.training_seconds:.1f} s"
        )
