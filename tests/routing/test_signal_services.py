"""Signals in the database: sources synced, generated from closed bars, submitted from outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from risk.limits import Side
from routing.models import MarketBar, Signal, SignalSource
from routing.signal_services import (
    SignalInvalid,
    signal_sources_sync,
    signal_submit,
    signals_generate,
)
from routing.signals import SOURCE_NAMES, source_defaults

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# The band the mean-reversion tests trade around: 20 closes alternating 99 / 101.
BAND = [Decimal(99), Decimal(101)] * 10


def bar(symbol: str, index: int, close: Decimal, *, interval: str = "1m") -> MarketBar:
    """The 1m bar opening ``index`` minutes after T0 (closed at the next minute less 1 ms)."""
    opened = T0 + index * MINUTE
    return MarketBar(
        symbol=symbol,
        interval=interval,
        open_time=opened,
        close_time=opened + MINUTE - timedelta(milliseconds=1),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=Decimal(1),
    )


def bars(closes: list[Decimal], *, symbol: str = "BTCUSDT", start: int = 0) -> datetime:
    """Store closes as consecutive 1m bars; return the moment the last of them closed."""
    MarketBar.objects.bulk_create([bar(symbol, start + i, close) for i, close in enumerate(closes)])
    return T0 + (start + len(closes)) * MINUTE


def only(name: str, **fields: object) -> SignalSource:
    """Make ``name`` the only enabled source."""
    SignalSource.objects.update(enabled=False)
    source, _ = SignalSource.objects.update_or_create(
        name=name, defaults={"enabled": True, **fields}
    )
    return source


class TestSignalSourcesSync:
    def test_it_creates_every_registered_source_enabled_at_full_weight_with_defaults(
        self,
    ) -> None:
        SignalSource.objects.all().delete()

        created = signal_sources_sync()

        assert sorted(created) == sorted(SOURCE_NAMES)
        assert "ml" in created
        for name in SOURCE_NAMES:
            row = SignalSource.objects.get(name=name)
            assert row.enabled
            assert row.weight == 1
            assert row.params == source_defaults(name)

    def test_it_adds_only_the_missing_source_and_keeps_the_operators_edits(self) -> None:
        # given an operator's edited momentum row and no mean-reversion (or ML) row
        SignalSource.objects.all().delete()
        SignalSource.objects.create(
            name="momentum", enabled=False, weight=Decimal("0.25"), params={"lookback": 5}
        )

        # when
        created = signal_sources_sync()

        # then
        assert created == ["mean_reversion", "ml"]
        momentum = SignalSource.objects.get(name="momentum")
        assert (momentum.enabled, momentum.weight, momentum.params) == (
            False,
            Decimal("0.25"),
            {"lookback": 5},
        )
        assert signal_sources_sync() == []


class TestSignalsGenerate:
    def test_it_records_a_signal_from_the_closed_bars(self) -> None:
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])

        [signal] = signals_generate(symbol="BTCUSDT", at=at)

        assert (signal.source, signal.symbol, signal.side) == ("mean_reversion", "BTCUSDT", "SELL")
        assert signal.status == Signal.Status.NEW
        assert signal.decision_price == Decimal("103.5")
        assert signal.created_at == at
        assert Decimal("0.5") < signal.strength <= 1
        assert Signal.objects.get() == signal

    def test_a_bar_not_closed_at_the_decision_is_never_used(self) -> None:
        # given a close far above the band, and after it a bar still open at ``at`` whose
        # close (far below the band) would flip the decision to BUY if it were read
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])
        bars([Decimal("90")], start=len(BAND) + 1)
        forming = MarketBar.objects.get(close=Decimal("90"))
        assert forming.close_time > at

        # when
        [signal] = signals_generate(symbol="BTCUSDT", at=at)

        # then
        assert signal.side == Side.SELL
        assert signal.decision_price == Decimal("103.5")
        # and once that bar has closed, it is the decision
        [later] = signals_generate(symbol="BTCUSDT", at=forming.close_time)
        assert later.side == Side.BUY
        assert later.decision_price == Decimal("90")

    def test_a_bar_closing_exactly_at_the_decision_is_used(self) -> None:
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        bars([*BAND, Decimal("103.5")])
        last = MarketBar.objects.get(close=Decimal("103.5"))

        [signal] = signals_generate(symbol="BTCUSDT", at=last.close_time)

        assert signal.decision_price == Decimal("103.5")

    def test_it_reads_only_that_symbols_1m_bars(self) -> None:
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        at = bars([*BAND, Decimal("100")])
        bars([*BAND, Decimal("103.5")], symbol="ETHUSDT")
        MarketBar.objects.bulk_create(
            [bar("BTCUSDT", len(BAND) + i, Decimal("50"), interval="1h") for i in range(3)]
        )

        assert signals_generate(symbol="BTCUSDT", at=at) == []

    def test_no_view_records_nothing(self) -> None:
        only("mean_reversion", params={"window": 20})
        at = bars([*BAND, Decimal("100.5")])

        assert signals_generate(symbol="BTCUSDT", at=at) == []
        assert not Signal.objects.exists()

    def test_too_few_bars_record_nothing(self) -> None:
        only("mean_reversion", params={"window": 20})
        at = bars([Decimal(99), Decimal(101), Decimal(130)])

        assert signals_generate(symbol="BTCUSDT", at=at) == []

    def test_the_bars_limit_caps_the_history_read(self) -> None:
        only("mean_reversion", params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])

        assert signals_generate(symbol="BTCUSDT", at=at, bars_limit=20) == []
        assert len(signals_generate(symbol="BTCUSDT", at=at, bars_limit=21)) == 1

    def test_the_strength_is_scaled_by_the_sources_weight(self) -> None:
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])
        [full] = signals_generate(symbol="BTCUSDT", at=at)
        only("mean_reversion", weight=Decimal("0.25"), params={"window": 20})
        Signal.objects.all().delete()  # the same bar is decided once; start it afresh

        [quarter] = signals_generate(symbol="BTCUSDT", at=at)

        assert quarter.strength == (full.strength * Decimal("0.25")).quantize(Decimal("1e-8"))

    def test_a_source_is_not_asked_again_until_a_new_bar_closes(self) -> None:
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])
        [first] = signals_generate(symbol="BTCUSDT", at=at)

        assert signals_generate(symbol="BTCUSDT", at=at + timedelta(seconds=30)) == []
        assert Signal.objects.count() == 1
        assert first.source == "mean_reversion"

    def test_a_zero_weight_records_nothing(self) -> None:
        only("mean_reversion", weight=Decimal(0), params={"window": 20})
        at = bars([*BAND, Decimal("103.5")])

        assert signals_generate(symbol="BTCUSDT", at=at) == []

    def test_a_disabled_source_is_not_run(self) -> None:
        only("mean_reversion", params={"window": 20})
        SignalSource.objects.filter(name="mean_reversion").update(enabled=False)
        at = bars([*BAND, Decimal("103.5")])

        assert signals_generate(symbol="BTCUSDT", at=at) == []

    def test_every_enabled_source_with_a_view_records_its_own_signal(self) -> None:
        # A steady climb then a jump: momentum buys the trend, mean reversion sells the jump.
        only("momentum", weight=Decimal(1), params={"lookback": 10, "vol_window": 20})
        only("mean_reversion", weight=Decimal(1), params={"window": 20})
        SignalSource.objects.filter(name="momentum").update(enabled=True)
        closes = [Decimal(100) + Decimal(i) / 10 + (i % 2) / Decimal(20) for i in range(40)]
        at = bars([*closes, Decimal(110)])

        signals = signals_generate(symbol="BTCUSDT", at=at)

        assert sorted((s.source, s.side) for s in signals) == [
            ("mean_reversion", "SELL"),
            ("momentum", "BUY"),
        ]

    def test_a_source_with_bad_params_is_skipped_and_the_others_still_run(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        only("mean_reversion", params={"window": 20})
        SignalSource.objects.update_or_create(
            name="momentum", defaults={"enabled": True, "params": {"lookback": "ten"}}
        )
        at = bars([*BAND, Decimal("103.5")])

        signals = signals_generate(symbol="BTCUSDT", at=at)

        assert [s.source for s in signals] == ["mean_reversion"]
        assert "momentum param 'lookback' must be a number" in caplog.text

    def test_rows_that_are_not_built_in_sources_are_skipped(self) -> None:
        only("my_model")
        at = bars([*BAND, Decimal("103.5")])

        assert signals_generate(symbol="BTCUSDT", at=at) == []

    def test_a_naive_moment_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            signals_generate(symbol="BTCUSDT", at=datetime(2024, 3, 1))  # noqa: DTZ001


class TestSignalSubmit:
    def test_it_records_an_external_signal(self) -> None:
        signal = signal_submit(
            symbol="ETHUSDT", side=Side.SELL, strength=Decimal("0.3"), source="my_model", at=T0
        )

        signal.refresh_from_db()
        assert (signal.symbol, signal.side, signal.strength, signal.source) == (
            "ETHUSDT",
            "SELL",
            Decimal("0.3"),
            "my_model",
        )
        assert signal.status == Signal.Status.NEW
        assert signal.created_at == T0
        assert signal.decision_price is None

    @pytest.mark.parametrize(
        ("field", "change", "message"),
        [
            ("symbol", {"symbol": "DOGEUSDT"}, "symbol 'DOGEUSDT' is not traded"),
            ("symbol", {"symbol": "btcusdt"}, "is not traded"),
            ("side", {"side": "HOLD"}, "side must be BUY or SELL, got 'HOLD'"),
            ("strength", {"strength": "1.01"}, "strength must be a number in"),
            ("strength", {"strength": "-0.1"}, "strength must be a number in"),
            ("strength", {"strength": "NaN"}, "strength must be a number in"),
            ("strength", {"strength": "Infinity"}, "strength must be a number in"),
            ("strength", {"strength": "half"}, "strength must be a number in"),
            ("strength", {"strength": 0.5}, "strength must be a number in"),
            ("source", {"source": "My Model"}, "source must be 1-64 characters"),
            ("source", {"source": ""}, "source must be 1-64 characters"),
            ("source", {"source": "a" * 65}, "source must be 1-64 characters"),
            ("source", {"source": "my_model\n"}, "source must be 1-64 characters"),
            ("source", {"source": "momentum"}, "is a built-in source"),
            ("at", {"at": datetime(2024, 3, 1)}, "timezone-aware"),  # noqa: DTZ001
        ],
    )
    def test_bad_input_is_refused_by_field_and_writes_nothing(
        self, field: str, change: dict[str, object], message: str
    ) -> None:
        good: dict[str, object] = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "strength": "0.5",
            "source": "my_model",
        }

        with pytest.raises(SignalInvalid, match=message) as refused:
            signal_submit(**{**good, **change})  # type: ignore[arg-type]

        assert refused.value.field == field
        assert not Signal.objects.exists()

    def test_the_strength_is_stored_at_the_projects_precision(self) -> None:
        signal = signal_submit(
            symbol="BTCUSDT", side="BUY", strength="0.123456789", source="x.y-z_1"
        )

        signal.refresh_from_db()
        assert signal.strength == Decimal("0.12345679")


class TestSubmitSignalCommand:
    @staticmethod
    def submit(*args: str) -> str:
        out = StringIO()
        call_command("submit_signal", *args, stdout=out)
        return out.getvalue()

    def test_it_records_the_signal_and_prints_its_id(self) -> None:
        printed = self.submit(
            "--symbol", "btcusdt", "--side", "buy", "--strength", "0.5", "--source", "my_model"
        )

        signal = Signal.objects.get()
        assert printed.strip() == str(signal.pk)
        assert (signal.symbol, signal.side, signal.strength, signal.source) == (
            "BTCUSDT",
            "BUY",
            Decimal("0.5"),
            "my_model",
        )

    @pytest.mark.parametrize(
        ("flag", "value", "message"),
        [
            ("--symbol", "DOGEUSDT", "symbol 'DOGEUSDT' is not traded"),
            ("--side", "HOLD", "side must be BUY or SELL"),
            ("--strength", "2", "strength must be a number in \\[0, 1\\], got '2'"),
            ("--strength", "nan", "strength must be a number in"),
            ("--strength", "lots", "strength must be a number in"),
            ("--source", "Bad Name", "source must be 1-64 characters"),
            ("--source", "mean_reversion", "is a built-in source"),
        ],
    )
    def test_bad_input_is_a_command_error_and_writes_nothing(
        self, flag: str, value: str, message: str
    ) -> None:
        args = {"--symbol": "BTCUSDT", "--side": "SELL", "--strength": "0.5", "--source": "ext"}
        args[flag] = value
        before = Signal.objects.count()

        with pytest.raises(CommandError, match=message):
            self.submit(*[part for pair in args.items() for part in pair])

        assert Signal.objects.count() == before

    def test_a_missing_flag_is_a_command_error_and_writes_nothing(self) -> None:
        with pytest.raises(CommandError, match="--source"):
            self.submit("--symbol", "BTCUSDT", "--side", "BUY", "--strength", "0.5")

        assert not Signal.objects.exists()
