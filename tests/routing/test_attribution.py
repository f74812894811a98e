"""Per-signal virtual positions: every fill is attributed, and the sources add up to the
account, also when a stop or ``flatten`` (orders without a signal) closes the position."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from risk.limits import Side
from risk.services import risk_state_load
from routing.accounting import (
    FLAT,
    UNATTRIBUTED,
    PositionState,
    attribution_split,
    fill_applied,
    unrealized_pnl,
)
from routing.binance_testserver import BinanceTestServer
from routing.books import fills_record
from routing.executor import _source_position
from routing.models import Fill, FillAttribution, Order, Position, Signal, SignalPosition
from routing.orders import order_create, order_send
from routing.venues import BinanceFutures


def held(quantity: str) -> PositionState:
    q = Decimal(quantity)
    return PositionState(quantity=q, entry_price=Decimal("100")) if q else FLAT


def test_a_signal_less_sell_reduces_the_longs_in_proportion_and_adds_up_exactly() -> None:
    virtual = {"a": held("0.3"), "b": held("0.1"), "c": held("-0.2")}

    split = attribution_split(virtual, side=Side.SELL, quantity=Decimal("0.2"), fee=Decimal("0.07"))

    assert [name for name, _, _ in split] == ["b", "a"]  # the short is not touched
    assert {name: qty for name, qty, _ in split} == {"a": Decimal("0.15"), "b": Decimal("0.05")}
    assert sum(qty for _, qty, _ in split) == Decimal("0.2")
    assert sum(fee for _, _, fee in split) == Decimal("0.07")


def test_more_than_the_signals_hold_goes_to_unattributed() -> None:
    split = attribution_split(
        {"a": held("0.1")}, side=Side.SELL, quantity=Decimal("0.25"), fee=Decimal("0.01")
    )
    assert split[0][:2] == ("a", Decimal("0.1"))
    assert split[1][:2] == (UNATTRIBUTED, Decimal("0.15"))
    assert split[0][2] + split[1][2] == Decimal("0.01")


def test_bad_split_input_is_refused() -> None:
    with pytest.raises(ValueError, match="quantity"):
        attribution_split({}, side=Side.BUY, quantity=Decimal(0), fee=Decimal(0))
    with pytest.raises(ValueError, match="fee"):
        attribution_split({}, side=Side.BUY, quantity=Decimal(1), fee=Decimal(-1))


quantities = st.decimals(min_value="-5", max_value="5", places=3, allow_nan=False)


@given(
    positions=st.lists(quantities, min_size=0, max_size=6),
    quantity=st.decimals(min_value="0.001", max_value="12", places=3),
    fee=st.decimals(min_value="0", max_value="3", places=6),
    buy=st.booleans(),
)
def test_a_split_always_adds_up_and_never_overshoots_a_position(
    positions: list[Decimal], quantity: Decimal, fee: Decimal, buy: bool
) -> None:
    virtual = {
        f"s{i}": PositionState(quantity=q, entry_price=Decimal("50") if q else Decimal(0))
        for i, q in enumerate(positions)
    }
    side = Side.BUY if buy else Side.SELL
    split = attribution_split(virtual, side=side, quantity=quantity, fee=fee)

    assert sum(q for _, q, _ in split) == quantity
    assert sum(f for _, _, f in split) == fee
    assert all(q > 0 and f >= 0 for _, q, f in split)
    opposed = sum(
        abs(s.quantity) for s in virtual.values() if (s.quantity < 0) == buy and s.quantity != 0
    )
    for name, q, _ in split:
        if name == UNATTRIBUTED:
            assert q == quantity - opposed
        else:
            # a signal is reduced, never flipped, by someone else's exit
            assert q <= abs(virtual[name].quantity)
    if quantity >= opposed:  # a full close closes every opposed signal exactly
        for name, state in virtual.items():
            if state.quantity != 0 and (state.quantity < 0) == buy:
                assert (name, abs(state.quantity)) in [(n, q) for n, q, _ in split]


# --- Through the books, against the local Binance-compatible server --------------------------


def signal(source: str, side: Side) -> Signal:
    return Signal.objects.create(
        created_at=timezone.now(),
        source=source,
        symbol="BTCUSDT",
        side=str(side),
        strength=Decimal(1),
        decision_price=Decimal("60000"),
    )


def send(
    venue: BinanceFutures,
    side: Side,
    quantity: str,
    *,
    source: str | None = None,
    purpose: str = Order.Purpose.ENTRY,
) -> Order:
    order = order_create(
        symbol="BTCUSDT",
        side=side,
        quantity=Decimal(quantity),
        signal=signal(source, side) if source else None,
        decision_price=Decimal("60000"),
        purpose=purpose,
        reduce_only=source is None,
    )
    return order_send(order=order, venue=venue)


@pytest.mark.django_db
@pytest.mark.usefixtures("global_limits")
def test_fills_move_each_sources_position_and_a_flatten_closes_them_all(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    send(venue, Side.BUY, "0.030", source="momentum")
    server.set_price("BTCUSDT", Decimal("61000"))
    send(venue, Side.BUY, "0.010", source="mean_reversion")
    send(venue, Side.SELL, "0.010", source="momentum")
    fills_record(venue=venue, symbol="BTCUSDT")

    assert _source_position("BTCUSDT", "momentum") == Decimal("0.020")
    assert _source_position("BTCUSDT", "mean_reversion") == Decimal("0.010")
    momentum_close = FillAttribution.objects.get(source="momentum", side="SELL")
    assert momentum_close.closing
    assert momentum_close.realized_pnl == (Decimal("61000") - Decimal("60000")) * Decimal("0.010")

    server.set_price("BTCUSDT", Decimal("59000"))
    send(venue, Side.SELL, "0.030", purpose=Order.Purpose.FLATTEN)
    fills_record(venue=venue, symbol="BTCUSDT")

    shares = {
        a.source: a
        for a in FillAttribution.objects.filter(fill__order__purpose=Order.Purpose.FLATTEN)
    }
    assert {name: a.quantity for name, a in shares.items()} == {
        "momentum": Decimal("0.020"),
        "mean_reversion": Decimal("0.010"),
    }
    assert all(a.closing for a in shares.values())
    assert set(SignalPosition.objects.values_list("quantity", flat=True)) == {Decimal(0)}
    assert Position.objects.get(symbol="BTCUSDT").quantity == 0
    # the sources' realised PnL adds up exactly to the account's, fees too
    account = Position.objects.get(symbol="BTCUSDT")
    sources = SignalPosition.objects.all()
    assert sum(s.realized_pnl for s in sources) == account.realized_pnl
    assert sum(s.fees for s in sources) == account.fees
    assert sum(a.fee for a in FillAttribution.objects.all()) == sum(
        f.fee for f in Fill.objects.all()
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("global_limits")
def test_open_sources_add_up_to_the_account_at_any_mark(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    risk_state_load(initial_nav=Decimal("100000"))
    send(venue, Side.BUY, "0.050", source="momentum")
    server.set_price("BTCUSDT", Decimal("60500"))
    send(venue, Side.SELL, "0.020", source="mean_reversion")  # its own short, inside the long
    server.set_price("BTCUSDT", Decimal("60200"))
    send(venue, Side.SELL, "0.010", purpose=Order.Purpose.STOP)  # reduces the long only
    fills_record(venue=venue, symbol="BTCUSDT")

    account = Position.objects.get(symbol="BTCUSDT")
    rows = list(SignalPosition.objects.filter(symbol="BTCUSDT"))
    assert sum(r.quantity for r in rows) == account.quantity == Decimal("0.020")
    assert _source_position("BTCUSDT", "mean_reversion") == Decimal("-0.020")
    assert _source_position("BTCUSDT", "momentum") == Decimal("0.040")
    mark = Decimal("61234.5")

    def total(state: PositionState) -> Decimal:
        return state.realized_pnl + unrealized_pnl(state, mark_price=mark)

    account_state = PositionState(
        quantity=account.quantity,
        entry_price=account.entry_price,
        realized_pnl=account.realized_pnl,
        entry_residue=account.entry_residue,
    )
    source_states = [
        PositionState(
            quantity=r.quantity,
            entry_price=r.entry_price,
            realized_pnl=r.realized_pnl,
            entry_residue=r.entry_residue,
        )
        for r in rows
    ]
    assert sum((total(s) for s in source_states), Decimal(0)) == total(account_state)
    # and each source's state is what its own share of the fills gives
    state = FLAT
    for a in FillAttribution.objects.filter(source="momentum").order_by("id"):
        state, _ = fill_applied(
            state, side=Side(a.side), quantity=a.quantity, price=a.price, fee=a.fee
        )
    assert state.quantity == _source_position("BTCUSDT", "momentum")


@pytest.mark.django_db
@pytest.mark.usefixtures("global_limits")
def test_the_rebuild_command_attributes_every_fill_again_identically(
    server: BinanceTestServer, venue: BinanceFutures
) -> None:
    from io import StringIO

    from django.core.management import call_command

    risk_state_load(initial_nav=Decimal("100000"))
    send(venue, Side.BUY, "0.030", source="momentum")
    send(venue, Side.SELL, "0.010", source="mean_reversion")
    server.set_price("BTCUSDT", Decimal("61000"))
    send(venue, Side.SELL, "0.020", purpose=Order.Purpose.STOP)
    fills_record(venue=venue, symbol="BTCUSDT")

    def books() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        return (
            sorted(
                SignalPosition.objects.values_list("source", "quantity", "realized_pnl", "fees")
            ),
            sorted(
                FillAttribution.objects.values_list(
                    "fill_id", "source", "quantity", "fee", "realized_pnl", "closing"
                )
            ),
        )

    before = books()
    SignalPosition.objects.all().delete()  # as after upgrading from books without attribution
    FillAttribution.objects.all().delete()
    out = StringIO()

    call_command("router_health_rebuild", "--attribution", stdout=out)

    assert books() == before
    assert f"attributed {len(before[1])} fill share(s)" in out.getvalue()
