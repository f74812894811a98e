"""The live-vs-replay divergence report: why live trading differed from its replay.

Both sides are read the same way (``_side``): live from the live database, the replay from
its own (``tradingsite.replaydb``). The unit compared is a **decision**: a signal (with the
order it became and that order's fills) or an order no signal made (a protective stop, an
exit, a flatten). Decisions are matched on symbol, source (or order purpose) and side, each
to the other side's nearest one decided on the same closed bar or within ``MATCH_BARS`` bars.

PnL over the period is marked at the period's last close ``P`` per symbol, which makes it a
sum over fills (``q·(P - price) - fee``, ``q`` signed) plus funding plus the mark-to-market of
a position live already held at the start. The gap (replay - live) therefore splits exactly
into causes that add up to it:

- ``live_only`` / ``replay_only``: decisions that traded on one side only (the other side
  had no such signal, or risk refused it: the row says which);
- ``sizing``: a matched decision traded a different quantity: ``(q_r - q_l)·(P - p_r)``;
- ``delay``: the market moved between the two fills: ``q_l·(ref(t_l) - ref(t_r))``, with
  ``ref(t)`` the open of the bar the fill happened in;
- ``execution``: the rest of the price difference (slippage against that open);
- ``fees`` of matched fills, ``funding``, and ``opening_position`` (live's position at the
  start, which a replay starts without).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from routing.models import Fill, FundingPayment, MarketBar, Order, ReplayRun, Signal
from tradingsite.decimals import quantize
from tradingsite.replaydb import replay_database

BAR = timedelta(minutes=1)
MATCH_BARS = 2  # a live tick may decide on a bar a little later than the replay did
ZERO = Decimal(0)
CAUSES = (
    "live_only",
    "replay_only",
    "sizing",
    "delay",
    "execution",
    "fees",
    "funding",
    "opening_position",
)


@dataclass
class Decision:
    """One side's decision and what came of it."""

    key: tuple[str, str, str]  # symbol, source or order purpose, side
    decided_at: datetime
    signal_id: int | None
    order_id: int | None
    status: str  # the signal's status, or the order's for an order without a signal
    reason: str  # why it did not trade, when it did not
    quantity: Decimal = ZERO  # filled, unsigned
    signed: Decimal = ZERO  # filled, + bought / - sold (an order may go against its signal)
    signed_notional: Decimal = ZERO  # sum of signed quantity x price
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    filled_at: datetime | None = None  # the first fill

    @property
    def bar(self) -> datetime:
        """The close of the last bar closed when it was decided."""
        return _bar_of(self.decided_at)

    @property
    def price(self) -> Decimal | None:
        return self.notional / self.quantity if self.quantity else None

    def pnl(self, mark: Decimal) -> Decimal:
        """Its fills marked at ``mark``, after fees (exact)."""
        return self.signed * mark - self.signed_notional - self.fee


def _bar_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) - timedelta(milliseconds=1)


@dataclass(frozen=True)
class Side:
    decisions: list[Decision]
    funding: Decimal
    opening: dict[str, Decimal]  # symbol -> position held at the start
    carried: list[Decision]  # orders decided before the start, filled in the period


def _add_fills(
    decision: Decision, order: Order, *, until: datetime, since: datetime | None = None
) -> None:
    for fill in sorted(order.fills.all(), key=lambda f: (f.filled_at, f.pk)):
        if fill.filled_at > until or (since is not None and fill.filled_at <= since):
            continue
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        decision.quantity += fill.quantity
        decision.signed += signed
        decision.signed_notional += signed * fill.price
        decision.notional += fill.quantity * fill.price
        decision.fee += fill.fee
        decision.filled_at = decision.filled_at or fill.filled_at


def _order_decision(order: Order) -> Decision:
    return Decision(
        key=(order.symbol, order.purpose, order.side),
        decided_at=order.decided_at,
        signal_id=None,
        order_id=order.pk,
        status=order.status,
        reason=order.last_error,
    )


def _side(run: ReplayRun) -> Side:
    """The period's decisions as the current database has them: those made on the bars
    closing from ``start`` to ``end``, with their fills up to ``MATCH_BARS`` bars after the
    end (both sides alike); orders decided before the start and filled in the period are
    ``carried``."""
    window = {"symbol__in": run.symbols}
    until = run.end + MATCH_BARS * BAR

    def in_period(moment: datetime) -> bool:
        return run.start <= _bar_of(moment) <= run.end

    decisions: dict[tuple[str, int], Decision] = {}
    signals = Signal.objects.filter(
        created_at__gt=run.start, created_at__lte=run.end + 2 * BAR, **window
    )
    for signal in signals.order_by("created_at", "id"):
        if in_period(signal.created_at):
            decisions[("signal", signal.pk)] = Decision(
                key=(signal.symbol, signal.source, signal.side),
                decided_at=signal.created_at,
                signal_id=signal.pk,
                order_id=None,
                status=signal.status,
                reason=signal.risk_reason,
            )
    orders = Order.objects.filter(
        decided_at__gt=run.start, decided_at__lte=run.end + 2 * BAR, **window
    ).prefetch_related("fills")
    for order in orders.order_by("decided_at", "id"):
        if not in_period(order.decided_at):
            continue
        if order.signal_id is not None and ("signal", order.signal_id) in decisions:
            decision = decisions[("signal", order.signal_id)]
        else:
            decision = decisions.setdefault(("order", order.pk), _order_decision(order))
        decision.order_id = order.pk
        _add_fills(decision, order, until=until)
        if decision.quantity == 0 and not decision.reason:
            decision.reason = order.last_error or f"order {order.status}"
    carried: list[Decision] = []
    earlier = (
        Order.objects.filter(fills__filled_at__gt=run.start, fills__filled_at__lte=until, **window)
        .distinct()
        .prefetch_related("fills")
    )
    for order in earlier.order_by("decided_at", "id"):
        if _bar_of(order.decided_at) < run.start:
            decision = _order_decision(order)
            _add_fills(decision, order, since=run.start, until=until)
            carried.append(decision)
    funding = FundingPayment.objects.filter(at__gt=run.start, at__lte=until, **window).aggregate(
        total=Sum("amount")
    )["total"]
    opening: dict[str, Decimal] = {}
    for symbol in run.symbols:
        held = ZERO
        for side, quantity in Fill.objects.filter(
            symbol=symbol, filled_at__lte=run.start
        ).values_list("side", "quantity"):
            held += quantity if side == "BUY" else -quantity
        opening[symbol] = held
    return Side(list(decisions.values()), funding or ZERO, opening, carried)


def _match(
    live: list[Decision], replay: list[Decision]
) -> tuple[list[tuple[Decision, Decision]], list[Decision], list[Decision]]:
    """Pairs within ``MATCH_BARS`` bars, the closest first (so a near pair is never taken
    apart by a farther one), live-only and replay-only."""
    by_key: dict[tuple[str, str, str], tuple[list[Decision], list[Decision]]] = defaultdict(
        lambda: ([], [])
    )
    for decision in live:
        by_key[decision.key][0].append(decision)
    for decision in replay:
        by_key[decision.key][1].append(decision)
    tolerance = MATCH_BARS * BAR
    pairs: list[tuple[Decision, Decision]] = []
    used: set[int] = set()
    for lefts, rights in by_key.values():
        candidates = sorted(
            (
                (abs(left.bar - right.bar), left.bar, i, j)
                for i, left in enumerate(lefts)
                for j, right in enumerate(rights)
                if abs(left.bar - right.bar) <= tolerance
            ),
        )
        for _, _, i, j in candidates:
            left, right = lefts[i], rights[j]
            if id(left) in used or id(right) in used:
                continue
            used.update((id(left), id(right)))
            pairs.append((left, right))
    live_only = [decision for decision in live if id(decision) not in used]
    replay_only = [decision for decision in replay if id(decision) not in used]
    return pairs, live_only, replay_only


@dataclass
class Report:
    run_id: int
    live_trading: bool
    marks: dict[str, str]
    live_pnl: Decimal
    replay_pnl: Decimal
    causes: dict[str, Decimal]
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def gap(self) -> Decimal:
        return self.replay_pnl - self.live_pnl

    def as_dict(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "run": self.run_id,
            "live_trading": self.live_trading,
            "marks": self.marks,
            "live_pnl": _text(self.live_pnl),
            "replay_pnl": _text(self.replay_pnl),
            "gap": _text(gap),
            "causes": {
                name: {
                    "pnl": _text(value),
                    "share": float(value / gap) if gap else None,
                }
                for name, value in self.causes.items()
            },
            "counts": self.counts,
            "trades": self.rows,
        }


def _bar_opens(run: ReplayRun) -> dict[tuple[str, datetime], Decimal]:
    rows = MarketBar.objects.filter(
        symbol__in=run.symbols,
        interval="1m",
        open_time__gte=run.start - BAR,
        open_time__lte=run.end + 2 * MATCH_BARS * BAR,
    ).values_list("symbol", "open_time", "open")
    return {(symbol, moment): price for symbol, moment, price in rows}


def _marks(run: ReplayRun) -> dict[str, Decimal]:
    marks: dict[str, Decimal] = {}
    for symbol in run.symbols:
        close = (
            MarketBar.objects.filter(symbol=symbol, interval="1m", close_time__lte=run.end)
            .order_by("-open_time")
            .values_list("close", flat=True)
            .first()
        )
        marks[symbol] = close if close is not None else ZERO
    return marks


def _opening_mark(run: ReplayRun, symbol: str) -> Decimal:
    close = (
        MarketBar.objects.filter(symbol=symbol, interval="1m", close_time__lte=run.start)
        .order_by("-open_time")
        .values_list("close", flat=True)
        .first()
    )
    return close if close is not None else ZERO


def _seconds(later: datetime | None, earlier: datetime) -> float | None:
    return round((later - earlier).total_seconds(), 3) if later is not None else None


def _text(value: Decimal | None) -> str:
    return "" if value is None else f"{quantize(value):f}"


def divergence_report(run: ReplayRun) -> Report:
    """Line the run up against live trading over its period, decision by decision."""
    live = _side(run)
    with replay_database(run.pk):
        replay = _side(run)
    marks = _marks(run)
    opens = _bar_opens(run)

    def ref(symbol: str, moment: datetime | None) -> Decimal | None:
        if moment is None:
            return None
        return opens.get((symbol, moment.replace(second=0, microsecond=0)))

    causes = dict.fromkeys(CAUSES, ZERO)
    rows: list[dict[str, Any]] = []
    pairs, live_only, replay_only = _match(live.decisions, replay.decisions)

    def row(
        cause: str, left: Decision | None, right: Decision | None, parts: dict[str, Decimal]
    ) -> None:
        first = left or right
        assert first is not None
        symbol, source, side = first.key
        bps: float | None = None
        if left and right and left.price is not None and right.price is not None:
            raw = (left.price - right.price) / right.price * 10_000
            bps = float(raw if left.signed > 0 else -raw)  # > 0: live's price was worse
        rows.append(
            {
                "cause": cause,
                "symbol": symbol,
                "source": source,
                "side": side,
                "live_decided_at": left.decided_at.isoformat() if left else None,
                "replay_decided_at": right.decided_at.isoformat() if right else None,
                "live_status": left.status if left else "",
                "replay_status": right.status if right else "",
                "reason": (
                    (left.reason if left and not left.quantity else "")
                    or (right.reason if right and not right.quantity else "")
                ),
                "live_quantity": _text(left.quantity) if left else "",
                "replay_quantity": _text(right.quantity) if right else "",
                "live_price": _text(left.price) if left else "",
                "replay_price": _text(right.price) if right else "",
                "price_diff_bps": round(bps, 3) if bps is not None else None,
                "live_fill_delay_s": _seconds(left.filled_at, left.bar) if left else None,
                "replay_fill_delay_s": _seconds(right.filled_at, right.bar) if right else None,
                "live_fee": _text(left.fee) if left else "",
                "replay_fee": _text(right.fee) if right else "",
                "pnl_gap": _text(sum(parts.values(), ZERO)),
                **{f"{name}_pnl": _text(parts.get(name, ZERO)) for name in CAUSES},
            }
        )

    for left, right in pairs:
        symbol = left.key[0]
        mark = marks[symbol]
        if left.quantity and right.quantity:
            assert left.price is not None
            assert right.price is not None
            sizing = (right.signed - left.signed) * (mark - right.price)
            ref_left, ref_right = ref(symbol, left.filled_at), ref(symbol, right.filled_at)
            if ref_left is None or ref_right is None:
                delay = ZERO
            else:
                delay = left.signed * (ref_left - ref_right)
            fees = left.fee - right.fee
            # The rest of the gap, exactly: the price difference beyond the market's move.
            execution = right.pnl(mark) - left.pnl(mark) - sizing - delay - fees
            parts = {"sizing": sizing, "delay": delay, "execution": execution, "fees": fees}
            cause = "matched"
        elif left.quantity:
            parts = {"live_only": -left.pnl(mark)}
            cause = "live_only"
        elif right.quantity:
            parts = {"replay_only": right.pnl(mark)}
            cause = "replay_only"
        else:
            parts = {}
            cause = "neither_traded"
        for name, value in parts.items():
            causes[name] += value
        row(cause, left, right, parts)
    for left in live_only:
        parts = {"live_only": -left.pnl(marks[left.key[0]])}
        causes["live_only"] += parts["live_only"]
        row("live_only", left, None, parts)
    for right in replay_only:
        parts = {"replay_only": right.pnl(marks[right.key[0]])}
        causes["replay_only"] += parts["replay_only"]
        row("replay_only", None, right, parts)
    causes["funding"] = replay.funding - live.funding

    def carried_in(side: Side) -> Decimal:
        """A position held at the start, marked through the period, and the fills of orders
        decided before it (a replay starts flat: nothing)."""
        held = sum(
            (
                quantity * (marks[symbol] - _opening_mark(run, symbol))
                for symbol, quantity in side.opening.items()
                if quantity
            ),
            ZERO,
        )
        return held + _total(side.carried, marks)

    live_carried, replay_carried = carried_in(live), carried_in(replay)
    causes["opening_position"] = replay_carried - live_carried
    live_pnl = _total(live.decisions, marks) + live.funding + live_carried
    replay_pnl = _total(replay.decisions, marks) + replay.funding + replay_carried
    rows.sort(key=lambda r: r["live_decided_at"] or r["replay_decided_at"] or "")
    return Report(
        run_id=run.pk,
        live_trading=any(decision.quantity for decision in live.decisions),
        marks={symbol: str(price) for symbol, price in marks.items()},
        live_pnl=live_pnl,
        replay_pnl=replay_pnl,
        causes=causes,
        rows=rows,
        counts={
            "matched": sum(1 for r in rows if r["cause"] == "matched"),
            "live_only": sum(1 for r in rows if r["cause"] == "live_only"),
            "replay_only": sum(1 for r in rows if r["cause"] == "replay_only"),
            "neither_traded": sum(1 for r in rows if r["cause"] == "neither_traded"),
            "live_decisions": len(live.decisions),
            "replay_decisions": len(replay.decisions),
        },
    )


def _total(decisions: Iterable[Decision], marks: dict[str, Decimal]) -> Decimal:
    return sum((decision.pnl(marks[decision.key[0]]) for decision in decisions), ZERO)


CSV_COLUMNS = (
    "cause",
    "symbol",
    "source",
    "side",
    "live_decided_at",
    "replay_decided_at",
    "live_status",
    "replay_status",
    "reason",
    "live_quantity",
    "replay_quantity",
    "live_price",
    "replay_price",
    "price_diff_bps",
    "live_fill_delay_s",
    "replay_fill_delay_s",
    "live_fee",
    "replay_fee",
    "pnl_gap",
    *(f"{name}_pnl" for name in CAUSES),
)
