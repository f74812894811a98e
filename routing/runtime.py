"""The venue a running tick uses, from the settings (``VENUE``): paper by default.

The paper venue's book lives in the database (``PaperAccount``): it is loaded for the tick and
saved after it, under the executor's single-flight lock. A fresh paper account starts with a
day of synthetic history (as a real venue serves its recent klines on the first request), so
the classical sources have closed bars to decide on at once and ``train_model`` has enough
bars to learn from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings

from routing.paper import PaperVenue, paper_config_for
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures, Venue
from routing.weights import WeightBudget
from tradingsite.guard import binance_client_for_writing
from tradingsite.metrics import venue_error_record

PAPER_ACCOUNT = "default"
PAPER_SEED = 20261126
PAPER_WARMUP = timedelta(hours=24)  # within the paper venue's bar_history of 1500
# The dev market trends a little (routing.synthetic.GarchParams.momentum): enough for a model
# trained on a day of its bars to beat the base rate out of sample, as a real edge would
# have to; with 0 no model could ever earn promotion (a random walk has nothing to find).
PAPER_MOMENTUM = 0.7
BINANCE_WEIGHT_PER_MINUTE = 2400  # USD-M futures, per IP (exchangeInfo rateLimits)
RENEW_EVERY_SECONDS = 1.0  # while a venue call waits (weight budget, Retry-After, back-off)


class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def renewing_sleep(renew: Callable[[], None]) -> Callable[[float], None]:
    """``time.sleep`` that calls ``renew`` at least every ``RENEW_EVERY_SECONDS``: a run that
    waits for the weight budget's next minute (up to 60 s) or a Retry-After keeps its
    single-flight lock instead of letting it expire under it (a second tick beside it)."""

    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, RENEW_EVERY_SECONDS))
            renew()

    return sleep


@contextmanager
def venue_session(
    *, now_ms: int | None = None, renew: Callable[[], None] | None = None
) -> Iterator[Venue]:
    """The configured venue for one tick (the paper book is saved when the tick succeeds).
    ``renew`` (the caller's lock) is kept alive while a venue call waits."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if settings.VENUE == "binance":
        policy = (
            RetryPolicy(on_error=venue_error_record)
            if renew is None
            else RetryPolicy(on_error=venue_error_record, sleep=renewing_sleep(renew))
        )
        yield BinanceFutures(
            client=binance_client_for_writing(),
            policy=policy,
            budget=WeightBudget(BINANCE_WEIGHT_PER_MINUTE),
        )
        return
    clock = _Clock(now)
    config = paper_config_for(settings.SYMBOLS, seed=PAPER_SEED, market_momentum=PAPER_MOMENTUM)
    venue = PaperVenue.load(name=PAPER_ACCOUNT, config=config, clock_ms=clock)
    if venue.version == 0:
        # A fresh account: start the market in the past and let it run up to now.
        clock.ms = now - int(PAPER_WARMUP.total_seconds() * 1000)
        venue = PaperVenue(name=PAPER_ACCOUNT, config=config, clock_ms=clock)
        clock.ms = now
    venue.advance(now)
    yield venue
    venue.save()
