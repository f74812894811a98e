"""Signals into the database: built-in sources run on closed bars, and external submissions.

Operators switch and weight sources in the admin (``SignalSource``); ``signals_generate`` runs
every enabled built-in source on one symbol's closed 1m bars and records a ``Signal`` per view,
its strength scaled by the source's weight. ``signal_submit`` records a signal from outside
(a model elsewhere, a person) after validating every field.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlinsights.services import ml_prediction_for_signal
from risk.limits import Side
from routing.models import MarketBar, Signal, SignalSource
from routing.signals import (
    ML_SOURCE,
    SOURCE_NAMES,
    SOURCES,
    Bars,
    ml_output,
    source_defaults,
    source_output,
    source_params,
)
from tradingsite.decimals import quantize

logger = logging.getLogger(__name__)

BAR_INTERVAL = "1m"
# External sources are named like this (fullmatch: ``$`` would also accept a trailing newline).
EXTERNAL_SOURCE_NAME = re.compile(r"[a-z0-9_.-]{1,64}")


class SignalInvalid(ValueError):
    """A submitted signal was refused; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def signal_sources_sync() -> list[str]:
    """Create a ``SignalSource`` row (enabled, weight 1, default params) for every registered
    source that has none; never change an existing row. Return the names created."""
    created: list[str] = []
    with transaction.atomic():
        existing = set(
            SignalSource.objects.filter(name__in=list(SOURCE_NAMES)).values_list("name", flat=True)
        )
        for name in SOURCE_NAMES:
            if name in existing:
                continue
            SignalSource.objects.create(
                name=name, enabled=True, weight=Decimal(1), params=source_defaults(name)
            )
            created.append(name)
    if created:
        logger.info("signal sources created: %s", ", ".join(created))
    return created


def _closed_bars(*, symbol: str, at: datetime, limit: int) -> tuple[Bars, Decimal | None]:
    """The latest ``limit`` 1m bars closed by ``at`` (oldest first), and the last close."""
    # close_time <= at: a bar still forming at ``at`` must never reach a decision.
    closes = list(
        MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
        .order_by("-open_time")
        .values_list("close", flat=True)[:limit]
    )
    closes.reverse()
    array = np.array([float(close) for close in closes], dtype=np.float64)
    return Bars(close=array), (closes[-1] if closes else None)


def signals_generate(*, symbol: str, at: datetime, bars_limit: int = 500) -> list[Signal]:
    """Run every enabled built-in source on ``symbol``'s 1m bars closed by ``at`` (and the ML
    source on the active model's fresh prediction, see ``_ml_signal``).

    Records one NEW ``Signal`` per source with a view (strength x the source's weight,
    decision price = the last closed bar's close, created at ``at``); a source with no view,
    a weight that rounds the strength to 0, or invalid params records nothing (the last is
    logged as an error and does not stop the other sources). Rows whose name is not a built-in
    source are skipped.
    """
    if timezone.is_naive(at):
        raise ValueError(f"at must be timezone-aware, got {at!r}")
    if bars_limit < 1:
        raise ValueError(f"bars_limit must be at least 1, got {bars_limit}")
    enabled = list(SignalSource.objects.filter(enabled=True))
    ml_row = next((row for row in enabled if row.name == ML_SOURCE), None)
    ml_signal = _ml_signal(row=ml_row, symbol=symbol, at=at) if ml_row is not None else None
    signals = [ml_signal] if ml_signal is not None else []
    sources = [row for row in enabled if row.name in SOURCES]
    newest_close = (
        MarketBar.objects.filter(symbol=symbol, interval=BAR_INTERVAL, close_time__lte=at)
        .order_by("-open_time")
        .values_list("close_time", flat=True)
        .first()
    )
    # A source decides on closed bars only: with no bar closed since its last signal for
    # this symbol, its view cannot have changed, so it is not asked (or recorded) again.
    decided = set(
        Signal.objects.filter(
            symbol=symbol, source__in=[row.name for row in sources], created_at__gte=newest_close
        ).values_list("source", flat=True)
        if newest_close is not None
        else []
    )
    sources = [row for row in sources if row.name not in decided]
    if not sources:
        return signals
    bars, last_close = _closed_bars(symbol=symbol, at=at, limit=bars_limit)
    with transaction.atomic():
        for row in sources:
            try:
                output = source_output(row.name, bars, row.params)
            except ValueError as error:
                logger.error("signal source %s skipped for %s: %s", row.name, symbol, error)
                continue
            logger.info("signal source %s on %s at %s: %s", row.name, symbol, at, output.reason)
            if output.direction is None:
                continue
            strength = quantize(output.strength * row.weight)
            if strength == 0:
                continue
            signals.append(
                Signal.objects.create(
                    created_at=at,
                    source=row.name,
                    symbol=symbol,
                    side=output.direction.value,
                    strength=strength,
                    status=Signal.Status.NEW,
                    decision_price=last_close,
                )
            )
    return signals


def _ml_signal(*, row: SignalSource, symbol: str, at: datetime) -> Signal | None:
    """The ML source's signal: from the active model's fresh prediction not used yet
    (``mlinsights``), recorded with the prediction it was made from. Any failure here is
    logged and costs only the ML signal: the classical sources still decide this tick."""
    try:
        params = source_params(ML_SOURCE, row.params)
    except ValueError as error:
        logger.error("signal source %s skipped for %s: %s", ML_SOURCE, symbol, error)
        return None
    try:
        with transaction.atomic():
            view = ml_prediction_for_signal(
                symbol=symbol, at=at, max_age_seconds=int(params["max_age_seconds"])
            )
            if view.prediction is None:
                logger.debug("signal source %s on %s: %s", ML_SOURCE, symbol, view.reason)
                return None
            output = ml_output(view.prediction.probability, params)
            logger.info(
                "signal source %s on %s at %s: %s; %s",
                ML_SOURCE,
                symbol,
                at,
                view.reason,
                output.reason,
            )
            if output.direction is None:
                return None
            strength = quantize(output.strength * row.weight)
            if strength == 0:
                return None
            return Signal.objects.create(
                created_at=at,
                source=ML_SOURCE,
                symbol=symbol,
                side=output.direction.value,
                strength=strength,
                status=Signal.Status.NEW,
                decision_price=view.prediction.close,
                prediction=view.prediction,
            )
    except Exception:  # the ML source must never take the tick (and the others) down with it
        logger.exception(
            "signal source %s failed on %s; the other sources carry on", ML_SOURCE, symbol
        )
        return None


def _side(side: Side | str) -> Side:
    try:
        return Side(side)
    except ValueError:
        raise SignalInvalid("side", f"side must be BUY or SELL, got {side!r}") from None


def _strength(strength: Decimal | str) -> Decimal:
    refused = SignalInvalid("strength", f"strength must be a number in [0, 1], got {strength!r}")
    if not isinstance(strength, Decimal | str):
        # Floats would carry binary noise into a Decimal column; bools are not strengths.
        raise refused
    try:
        value = Decimal(strength)
    except InvalidOperation:
        raise refused from None
    if not value.is_finite() or not 0 <= value <= 1:
        raise refused
    return quantize(value)


def _source(source: str) -> str:
    if not isinstance(source, str) or not EXTERNAL_SOURCE_NAME.fullmatch(source):
        raise SignalInvalid(
            "source",
            f"source must be 1-64 characters of a-z, 0-9, '_', '.' or '-', got {source!r}",
        )
    if source in SOURCE_NAMES:
        raise SignalInvalid(
            "source", f"source {source!r} is a built-in source; name external sources otherwise"
        )
    return source


def signal_submit(
    *,
    symbol: str,
    side: Side | str,
    strength: Decimal | str,
    source: str,
    at: datetime | None = None,
) -> Signal:
    """Record an external signal (status NEW, no decision price: the router prices it).

    Raises ``SignalInvalid`` (a ``ValueError`` naming the field) and writes nothing when the
    symbol is not traded (``settings.SYMBOLS``), the side is not BUY/SELL, the strength is not
    a finite number in [0, 1], or the source name is malformed or a built-in source's.
    """
    if symbol not in settings.SYMBOLS:
        traded = ", ".join(settings.SYMBOLS)
        raise SignalInvalid("symbol", f"symbol {symbol!r} is not traded (SYMBOLS: {traded})")
    valid_side = _side(side)
    valid_strength = _strength(strength)
    valid_source = _source(source)
    if at is None:
        at = timezone.now()
    elif timezone.is_naive(at):
        raise SignalInvalid("at", f"at must be timezone-aware, got {at!r}")
    return Signal.objects.create(
        created_at=at,
        source=valid_source,
        symbol=symbol,
        side=valid_side.value,
        strength=valid_strength,
        status=Signal.Status.NEW,
    )
