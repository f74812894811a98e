from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from routing.klines import INTERVALS, KlinesImportError, ParsedBar, klines_import


def _with_progress(batches: Iterable[list[ParsedBar]], total: int) -> Iterator[list[ParsedBar]]:
    with tqdm(total=total, unit="bar", desc="importing") as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))


class Command(BaseCommand):
    help = "Import a Binance public-data klines CSV (any published form) as market bars."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--interval", required=True, choices=list(INTERVALS))

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        try:
            count = klines_import(
                path=path,
                symbol=options["symbol"].upper(),
                interval=options["interval"],
                progress=_with_progress,
            )
        except KlinesImportError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"imported {count} bars of {options['symbol'].upper()}")
