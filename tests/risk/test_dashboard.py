"""The Risk tab: its selectors against real rows, the read-only API built on them, and the page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import include, path, reverse

from risk.dashboard import (
    AUTOTUNE_EVENTS_SHOWN,
    OVERRIDE_SYMBOLS_SHOWN,
    REFUSALS_SHOWN,
    SNAPSHOTS_SHOWN,
    autotune_events_recent,
    autotune_multiplier_series,
    decimal_text,
    limits_compared,
    refusals_recent,
    risk_tab_context,
    snapshots_recent,
)
from risk.limits import limits_as_dict
from risk.models import AutotuneEvent, RiskLimit, RiskSnapshot, RiskState
from risk.selectors import limits_effective
from risk.services import (
    kill_switch_set,
    risk_halt,
    risk_multiplier_set,
    risk_snapshot_write,
    risk_state_load,
)
from routing.models import Signal

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("global_limits")]

# The API under the prefix the project mounts it on, for the tests that call it.
urlpatterns = [path("api/v1/", include("risk.api"))]
API_URLS = "tests.risk.test_dashboard"

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------


def state_with_multiplier(multiplier: str) -> RiskState:
    risk_state_load(initial_nav=Decimal("10000"), at=T0)
    return risk_multiplier_set(multiplier=Decimal(multiplier))


def autotune_event(
    at: datetime, old: str, new: str, inputs: dict[str, Any] | None = None
) -> AutotuneEvent:
    event = AutotuneEvent.objects.create(
        inputs=inputs if inputs is not None else {"observations": 30},
        old_multiplier=Decimal(old),
        new_multiplier=Decimal(new),
        old_limits={},
        new_limits={},
        reason=f"{old} -> {new}",
    )
    # created_at is auto_now_add: set the moment the test needs afterwards.
    AutotuneEvent.objects.filter(pk=event.pk).update(created_at=at)
    event.refresh_from_db()
    return event


def signal(at: datetime, *, status: str = Signal.Status.REJECTED, code: str = "") -> Signal:
    return Signal.objects.create(
        created_at=at,
        source="trend",
        symbol="BTCUSDT",
        side="BUY",
        strength=Decimal("0.5"),
        status=status,
        risk_code=code,
        risk_reason=f"{code}: order 1200 > limit 1000" if code else "",
    )


def by_field(limits: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["field"]: row for row in limits["rows"]}


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class Page(HTMLParser):
    """Every element of a rendered page with its attributes and text (for lookups by id or by
    data attributes, as the browser tests do)."""

    VOID = frozenset({"meta", "link", "br", "input", "img", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.elements
            if (tag is None or element.tag == tag)
            and all(element.attrs.get(name) == value for name, value in wanted.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} elements match {tag} {attrs}"
        return found[0]

    def rows(self, table_id: str) -> list[Element]:
        """The <tr> of a table's body, in order (rows carry data-id, or the empty-row class)."""
        start = self.elements.index(self.one("table", id=table_id))
        body = next(
            index
            for index in range(start, len(self.elements))
            if self.elements[index].tag == "tbody"
        )
        end = next(
            (
                index
                for index in range(body + 1, len(self.elements))
                if self.elements[index].tag in ("table", "section")
            ),
            len(self.elements),
        )
        return [element for element in self.elements[body:end] if element.tag == "tr"]


def render_page(user: User, context: dict[str, Any]) -> Page:
    request = RequestFactory().get("/risk/")
    request.user = user
    html = render_to_string(
        "dashboard/risk.html", {**context, "tabs": [], "active_tab": "risk"}, request=request
    )
    return Page(html)


# --- configured vs effective limits -------------------------------------------------------------


class TestLimitsCompared:
    def test_effective_size_limits_are_the_configured_ones_times_the_state_multiplier(
        self,
    ) -> None:
        state_with_multiplier("0.5")

        limits = limits_compared()

        rows = by_field(limits)
        assert limits["configured"] is True
        assert limits["size_multiplier"] == "0.5"
        assert (
            rows["max_order_notional"]["configured"],
            rows["max_order_notional"]["effective"],
        ) == (
            "1000",
            "500",
        )
        assert rows["max_gross_exposure"]["effective"] == "5000"
        assert rows["max_order_notional"]["scaled"] is True
        # The autotuner never touches leverage, loss or drawdown limits.
        assert rows["max_leverage"]["effective"] == rows["max_leverage"]["configured"] == "3"
        assert rows["max_drawdown"]["effective"] == "0.1"
        assert rows["loss_streak_cooldown"]["effective"] == "3600"
        assert rows["max_leverage"]["scaled"] is False

    def test_every_effective_value_is_what_the_pre_trade_checks_use(self) -> None:
        state_with_multiplier("0.37")
        in_force = limits_as_dict(limits_effective(multiplier=Decimal("0.37")))

        rows = by_field(limits_compared())

        assert set(rows) == set(in_force) - {"kill_switch"}
        for name, row in rows.items():
            expected = in_force[name]
            expected_text = (
                decimal_text(Decimal(expected)) if isinstance(expected, str) else str(expected)
            )
            assert row["effective"] == expected_text, name

    def test_a_multiplier_below_the_floor_is_clamped_like_the_checks_clamp_it(self) -> None:
        # The floor is 0.25: a state multiplier of 0.1 still allows a quarter of each size limit.
        state_with_multiplier("0.1")

        rows = by_field(limits_compared())

        assert rows["max_order_notional"]["effective"] == "250"
        assert rows["max_position_notional"]["effective"] == "1250"

    def test_a_symbol_override_shows_its_configured_and_effective_values(self) -> None:
        state_with_multiplier("0.5")
        RiskLimit.objects.create(
            symbol="BTCUSDT",
            max_order_notional=Decimal("2000"),
            max_position_notional=Decimal("8000"),
        )

        limits = limits_compared()

        rows = by_field(limits)
        assert limits["symbols"] == ["BTCUSDT"]
        assert rows["max_order_notional"]["overrides"] == [
            {"symbol": "BTCUSDT", "configured": "2000", "effective": "1000"}
        ]
        btc = limits_effective(symbol="BTCUSDT", multiplier=Decimal("0.5"))
        assert rows["max_position_notional"]["overrides"][0]["effective"] == decimal_text(
            btc.max_position_notional
        )
        # Not overridden: inherits the global value.
        assert rows["stop_distance"]["overrides"] == [
            {"symbol": "BTCUSDT", "configured": None, "effective": "0.05"}
        ]
        # Account-wide limits have no per-symbol value at all.
        assert rows["max_leverage"]["account_wide"] is True
        assert rows["max_leverage"]["overrides"] == []
        # The global columns are untouched by the override.
        assert rows["max_order_notional"]["configured"] == "1000"

    def test_only_the_first_overrides_get_columns_and_the_rest_are_announced(self) -> None:
        for index in range(OVERRIDE_SYMBOLS_SHOWN + 1):
            RiskLimit.objects.create(symbol=f"COIN{index:02d}USDT", stop_distance=Decimal("0.02"))

        limits = limits_compared()

        assert limits["symbols"] == [
            f"COIN{index:02d}USDT" for index in range(OVERRIDE_SYMBOLS_SHOWN)
        ]
        assert limits["more_symbols"] is True
        assert len(by_field(limits)["stop_distance"]["overrides"]) == OVERRIDE_SYMBOLS_SHOWN

    def test_without_a_risk_state_the_effective_limits_are_unknown(self) -> None:
        limits = limits_compared()

        assert limits["configured"] is True
        assert limits["size_multiplier"] is None
        assert limits["halted"] is None
        assert {row["effective"] for row in limits["rows"]} == {None}
        assert by_field(limits)["max_order_notional"]["configured"] == "1000"

    def test_without_global_limits_it_says_where_to_set_them(self) -> None:
        RiskLimit.objects.all().delete()

        limits = limits_compared()

        assert limits["configured"] is False
        assert limits["rows"] == []
        assert "admin" in limits["problem"]

    def test_it_reports_the_kill_switch_and_a_halt_with_its_reason(self) -> None:
        state_with_multiplier("1")
        kill_switch_set(on=True, actor="olive", reason="exchange incident")
        risk_halt(reason="manual stop for maintenance", actor="olive")

        limits = limits_compared()

        assert limits["kill_switch"] is True
        assert limits["halted"] is True
        assert limits["halt_reason"] == "manual stop for maintenance"
        assert limits["state_checksum_ok"] is True

    def test_a_state_row_that_fails_its_checksum_is_flagged(self) -> None:
        state_with_multiplier("0.5")
        RiskState.objects.update(checksum="0" * 64)

        assert limits_compared()["state_checksum_ok"] is False


# --- autotune -----------------------------------------------------------------------------------


class TestAutotuneHistory:
    def test_it_lists_the_newest_events_first_and_at_most_the_limit(self) -> None:
        for minute in range(AUTOTUNE_EVENTS_SHOWN + 5):
            autotune_event(T0 + timedelta(minutes=minute), "1", "0.9")

        events = autotune_events_recent()

        assert len(events) == AUTOTUNE_EVENTS_SHOWN
        times = [event["at"] for event in events]
        assert times == sorted(times, reverse=True)
        assert times[0] == (T0 + timedelta(minutes=AUTOTUNE_EVENTS_SHOWN + 4)).isoformat()

    def test_an_event_shows_its_multipliers_reason_and_inputs_as_text(self) -> None:
        event = autotune_event(
            T0,
            "1",
            "0.75",
            inputs={"observations": 30, "realised_vol": 0.0123456789, "sharpe": None},
        )

        (shown,) = autotune_events_recent()

        assert shown == {
            "id": event.pk,
            "at": T0.isoformat(),
            "old_multiplier": "1",
            "new_multiplier": "0.75",
            "reason": "1 -> 0.75",
            "inputs": [
                {"name": "observations", "value": "30"},
                {"name": "realised_vol", "value": "0.0123457"},
                {"name": "sharpe", "value": "n/a"},
            ],
        }

    def test_the_chart_series_runs_oldest_first_from_the_first_old_multiplier(self) -> None:
        autotune_event(T0, "1", "0.8")
        autotune_event(T0 + timedelta(hours=1), "0.8", "0.6")
        autotune_event(T0 + timedelta(hours=2), "0.6", "0.7")

        series = autotune_multiplier_series()

        assert series["points"] == [
            [T0.isoformat(), "1"],
            [T0.isoformat(), "0.8"],
            [(T0 + timedelta(hours=1)).isoformat(), "0.6"],
            [(T0 + timedelta(hours=2)).isoformat(), "0.7"],
        ]

    def test_the_chart_series_keeps_only_the_newest_points(self) -> None:
        for hour in range(5):
            autotune_event(T0 + timedelta(hours=hour), f"0.{9 - hour}", f"0.{8 - hour}")

        series = autotune_multiplier_series(limit=2)

        assert series["points"] == [
            [(T0 + timedelta(hours=3)).isoformat(), "0.6"],
            [(T0 + timedelta(hours=3)).isoformat(), "0.5"],
            [(T0 + timedelta(hours=4)).isoformat(), "0.4"],
        ]

    def test_with_no_event_both_are_empty(self) -> None:
        assert autotune_events_recent() == []
        assert autotune_multiplier_series() == {"points": []}


# --- refusals -----------------------------------------------------------------------------------


class TestRefusals:
    def test_it_lists_only_refused_signals_newest_first_with_their_reasons(self) -> None:
        signal(T0, code="max_order_notional")
        signal(T0 + timedelta(minutes=1), status=Signal.Status.ROUTED)
        newest = signal(T0 + timedelta(minutes=2), code="max_leverage")

        refusals = refusals_recent()

        assert [row["risk_code"] for row in refusals] == ["max_leverage", "max_order_notional"]
        assert refusals[0] == {
            "id": newest.pk,
            "at": (T0 + timedelta(minutes=2)).isoformat(),
            "source": "trend",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "risk_code": "max_leverage",
            "risk_reason": "max_leverage: order 1200 > limit 1000",
        }

    def test_it_shows_at_most_the_limit(self) -> None:
        for minute in range(REFUSALS_SHOWN + 3):
            signal(T0 + timedelta(minutes=minute), code="max_open_orders")

        refusals = refusals_recent()

        assert len(refusals) == REFUSALS_SHOWN
        assert refusals[-1]["at"] == (T0 + timedelta(minutes=3)).isoformat()

    def test_with_no_refusal_it_is_empty(self) -> None:
        signal(T0, status=Signal.Status.ACCEPTED)

        assert refusals_recent() == []


# --- snapshots ----------------------------------------------------------------------------------


class TestSnapshots:
    def test_it_lists_the_newest_snapshots_first_and_at_most_the_limit(self) -> None:
        state_with_multiplier("0.5")  # writes two snapshots (created, multiplier changed)
        for _ in range(SNAPSHOTS_SHOWN):
            risk_snapshot_write(actor="olive", note="before the deploy")
        newest = RiskSnapshot.objects.order_by("-created_at", "-id").first()
        assert newest is not None

        snapshots = snapshots_recent()

        assert len(snapshots) == SNAPSHOTS_SHOWN
        assert snapshots[0]["id"] == newest.pk
        assert [row["at"] for row in snapshots] == sorted(
            (row["at"] for row in snapshots), reverse=True
        )
        assert snapshots[0] | {"id": 0, "at": "", "checksum": ""} == {
            "id": 0,
            "at": "",
            "reason": "manual",
            "reason_label": "manual",
            "state_version": 1,
            "nav": "10000",
            "size_multiplier": "0.5",
            "halted": False,
            "checksum": "",
            "checksum_ok": True,
            "actor": "olive",
            "note": "before the deploy",
        }

    def test_a_damaged_snapshot_is_flagged(self) -> None:
        state_with_multiplier("0.5")
        damaged = risk_snapshot_write()
        RiskSnapshot.objects.filter(pk=damaged.pk).update(state={**damaged.state, "nav": "1"})

        snapshots = {row["id"]: row for row in snapshots_recent()}

        assert snapshots[damaged.pk]["checksum_ok"] is False
        assert snapshots[damaged.pk]["nav"] == "1"
        assert all(row["checksum_ok"] for pk, row in snapshots.items() if pk != damaged.pk)

    def test_with_no_snapshot_it_is_empty(self) -> None:
        assert snapshots_recent() == []


# --- the page's context -------------------------------------------------------------------------


def test_the_tab_context_holds_every_selector_in_a_few_bounded_queries(
    django_assert_max_num_queries: Any,
) -> None:
    state_with_multiplier("0.5")
    for index in range(3):
        RiskLimit.objects.create(symbol=f"COIN{index}USDT", stop_distance=Decimal("0.02"))
        autotune_event(T0 + timedelta(minutes=index), "1", "0.9")
        signal(T0 + timedelta(minutes=index), code="max_order_notional")

    with django_assert_max_num_queries(6) as captured:
        context = risk_tab_context()

    # Bounded: every query has a LIMIT, so the page costs the same on years of history.
    assert all(" LIMIT " in query["sql"].upper() for query in captured.captured_queries)

    assert context["risk_limits"] == limits_compared()
    assert context["risk_autotune_events"] == autotune_events_recent()
    assert context["risk_autotune_series"] == autotune_multiplier_series()
    assert context["risk_refusals"] == refusals_recent()
    assert context["risk_snapshots"] == snapshots_recent()
    assert context["risk_shown"] == {
        "autotune_events": AUTOTUNE_EVENTS_SHOWN,
        "refusals": REFUSALS_SHOWN,
        "snapshots": SNAPSHOTS_SHOWN,
    }
    # JSON-ready: what the page renders is exactly what the API serves.
    assert as_json(context) == context


# --- the API ------------------------------------------------------------------------------------


ENDPOINTS = {
    "api-risk-limits": "/api/v1/risk/limits/",
    "api-risk-autotune": "/api/v1/risk/autotune/",
    "api-risk-refusals": "/api/v1/risk/refusals/",
    "api-risk-snapshots": "/api/v1/risk/snapshots/",
}


@pytest.mark.urls(API_URLS)
class TestApi:
    @pytest.mark.parametrize(("name", "url"), ENDPOINTS.items())
    def test_each_endpoint_has_its_name_and_path(self, name: str, url: str) -> None:
        assert reverse(name) == url

    @pytest.mark.parametrize("url", ENDPOINTS.values())
    def test_anonymous_requests_are_refused(self, client: Client, url: str) -> None:
        response = client.get(url)

        assert response.status_code in (401, 403)
        assert "risk_code" not in response.content.decode()

    def test_every_endpoint_serves_exactly_what_the_page_shows(
        self, client: Client, viewer_user: User
    ) -> None:
        state_with_multiplier("0.5")
        RiskLimit.objects.create(symbol="BTCUSDT", max_order_notional=Decimal("2000"))
        autotune_event(T0, "1", "0.5", inputs={"realised_vol": 0.02})
        signal(T0, code="max_order_notional")
        client.force_login(viewer_user)

        responses = {name: client.get(url) for name, url in ENDPOINTS.items()}

        statuses = {name: response.status_code for name, response in responses.items()}
        assert statuses == dict.fromkeys(ENDPOINTS, 200)
        context = risk_tab_context()
        assert responses["api-risk-limits"].json() == context["risk_limits"]
        assert responses["api-risk-autotune"].json() == {
            "events": context["risk_autotune_events"],
            "series": context["risk_autotune_series"],
        }
        assert responses["api-risk-refusals"].json() == context["risk_refusals"]
        assert responses["api-risk-snapshots"].json() == context["risk_snapshots"]
        limits = by_field(responses["api-risk-limits"].json())
        assert limits["max_order_notional"]["effective"] == "500"
        assert limits["max_order_notional"]["overrides"][0]["effective"] == "1000"

    def test_with_nothing_recorded_every_endpoint_serves_the_empty_selectors(
        self, client: Client, viewer_user: User
    ) -> None:
        RiskLimit.objects.all().delete()
        client.force_login(viewer_user)

        served = {name: client.get(url).json() for name, url in ENDPOINTS.items()}

        assert served["api-risk-limits"] == limits_compared()
        assert served["api-risk-limits"]["configured"] is False
        assert served["api-risk-limits"]["size_multiplier"] is None
        assert served["api-risk-autotune"] == {"events": [], "series": {"points": []}}
        assert served["api-risk-refusals"] == []
        assert served["api-risk-snapshots"] == []

    def test_the_endpoints_are_read_only(self, client: Client, operator_user: User) -> None:
        client.force_login(operator_user)

        response = client.post(ENDPOINTS["api-risk-limits"], {"max_leverage": "10"})

        assert response.status_code == 405
        assert RiskLimit.objects.get(symbol="").max_leverage == Decimal("3")


# --- the page -----------------------------------------------------------------------------------


class TestPage:
    def test_every_limit_cell_shows_the_selectors_text(self, viewer_user: User) -> None:
        state_with_multiplier("0.5")
        RiskLimit.objects.create(symbol="BTCUSDT", max_order_notional=Decimal("2000"))
        context = risk_tab_context()

        page = render_page(viewer_user, context)

        assert page.one("h1").text == "Risk"
        assert page.one(id="size-multiplier").text == "0.5"
        assert page.one(id="kill-switch-state").text == "off"
        assert page.one(id="trading-state").text == "trading"
        assert "hidden" in page.one(id="state-warning").attrs
        for row in context["risk_limits"]["rows"]:
            for kind in ("configured", "effective"):
                cell = page.one("td", data_field=row["field"], data_kind=kind)
                assert cell.text == row[kind], (row["field"], kind)
            for override in row["overrides"]:
                for kind in ("configured", "effective"):
                    cell = page.one(
                        "td",
                        data_field=row["field"],
                        data_kind="override" if kind == "configured" else "override-effective",
                        data_symbol=override["symbol"],
                    )
                    assert cell.text == (override[kind] or "—"), (row["field"], kind)
        assert page.one("td", data_field="max_order_notional", data_kind="effective").text == "500"
        assert (
            page.one(
                "td", data_field="max_order_notional", data_kind="override", data_symbol="BTCUSDT"
            ).text
            == "2000"
        )
        # Not overridden for BTCUSDT: a dash, it inherits the global value.
        assert (
            page.one(
                "td", data_field="stop_distance", data_kind="override", data_symbol="BTCUSDT"
            ).text
            == "—"
        )
        assert page.one("th", data_symbol="BTCUSDT").attrs["colspan"] == "2"

    def test_a_kill_switch_and_a_halt_are_shown(self, viewer_user: User) -> None:
        state_with_multiplier("1")
        kill_switch_set(on=True, actor="olive", reason="exchange incident")
        risk_halt(reason="manual stop", actor="olive")

        page = render_page(viewer_user, risk_tab_context())

        assert page.one(id="kill-switch-state").text == "on"
        assert page.one(id="kill-switch-state").attrs["data-on"] == "true"
        assert page.one(id="trading-state").text == "halted: manual stop"

    def test_history_tables_show_the_selectors_rows_in_order(self, viewer_user: User) -> None:
        state_with_multiplier("0.5")
        autotune_event(T0, "1", "0.8", inputs={"realised_vol": 0.02})
        autotune_event(T0 + timedelta(hours=1), "0.8", "0.6")
        signal(T0, code="max_order_notional")
        signal(T0 + timedelta(minutes=1), code="<script>alert(1)</script>")
        context = risk_tab_context()

        page = render_page(viewer_user, context)

        autotune_rows = page.rows("autotune-table")
        assert [row.attrs["data-id"] for row in autotune_rows] == [
            str(event["id"]) for event in context["risk_autotune_events"]
        ]
        newest = context["risk_autotune_events"][0]
        assert (
            page.find_all("td", data_col="new_multiplier")[0].text
            == newest["new_multiplier"]
            == "0.6"
        )
        assert page.find_all("td", data_col="old_multiplier")[0].text == "0.8"
        assert page.find_all("time")[0].attrs["datetime"] == newest["at"]
        assert page.find_all("time")[0].text == "2026-03-02 13:00:00"

        refusal_rows = page.rows("refusals-table")
        assert [row.attrs["data-id"] for row in refusal_rows] == [
            str(refusal["id"]) for refusal in context["risk_refusals"]
        ]
        assert page.find_all("td", data_col="risk_code")[1].text == "max_order_notional"

        snapshot_rows = page.rows("snapshots-table")
        assert [row.attrs["data-id"] for row in snapshot_rows] == [
            str(snapshot["id"]) for snapshot in context["risk_snapshots"]
        ]
        assert page.find_all("td", data_col="size_multiplier")[0].text == "0.5"
        assert page.find_all("td", data_col="checksum_ok")[0].text == "valid"

        series = json.loads(page.one("script", id="autotune-series-data").text)
        assert series == context["risk_autotune_series"]
        assert "hidden" not in page.one(id="autotune-chart").attrs
        assert "hidden" in page.one(id="autotune-chart-empty").attrs
        assert not page.find_all("tr", **{"class": "empty-row"})

    def test_a_refusal_reason_is_escaped(self, viewer_user: User) -> None:
        signal(T0, code="<script>alert(1)</script>")
        request = RequestFactory().get("/risk/")
        request.user = viewer_user

        html = render_to_string("dashboard/risk.html", risk_tab_context(), request=request)

        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_each_table_has_a_helpful_empty_state(self, viewer_user: User) -> None:
        RiskLimit.objects.all().delete()

        page = render_page(viewer_user, risk_tab_context())

        empty = {
            table: [row.text for row in page.rows(table)]
            for table in ("limits-table", "autotune-table", "refusals-table", "snapshots-table")
        }
        assert "create them in the admin" in empty["limits-table"][0]
        assert "No autotune event yet" in empty["autotune-table"][0]
        assert "No refusals" in empty["refusals-table"][0]
        assert "No snapshot yet" in empty["snapshots-table"][0]
        assert all(len(rows) == 1 for rows in empty.values())
        assert page.one(id="size-multiplier").text == "—"
        assert page.one(id="trading-state").text == "no risk state yet"
        assert "hidden" not in page.one(id="no-state-note").attrs
        assert "hidden" in page.one(id="autotune-chart").attrs
        assert "hidden" not in page.one(id="autotune-chart-empty").attrs

    def test_without_a_state_the_limits_show_configured_values_and_dashes(
        self, viewer_user: User
    ) -> None:
        page = render_page(viewer_user, risk_tab_context())

        assert (
            page.one("td", data_field="max_order_notional", data_kind="configured").text == "1000"
        )
        assert page.one("td", data_field="max_order_notional", data_kind="effective").text == "—"
        assert page.find_all("th", data_symbol="BTCUSDT") == []

    def test_the_page_loads_the_chart_library_and_its_script(self, viewer_user: User) -> None:
        page = render_page(viewer_user, risk_tab_context())

        sources = [element.attrs.get("src", "") for element in page.find_all("script")]
        assert any(source.endswith("vendor/echarts/echarts.min.js") for source in sources)
        assert any(source.endswith("tradingsite/risk.js") for source in sources)
        assert page.one(id="risk-tab").attrs["data-limits-url"] == "/api/v1/risk/limits/"


# --- as the project mounts them (tradingsite.urls) -----------------------------------------------


class TestMounted:
    def test_the_risk_tab_serves_the_selectors_values(
        self, client: Client, viewer_user: User
    ) -> None:
        state_with_multiplier("0.5")
        client.force_login(viewer_user)

        response = client.get("/risk/")

        assert response.status_code == 200
        page = Page(response.content.decode())
        assert page.one(id="size-multiplier").text == "0.5"
        assert page.one("td", data_field="max_order_notional", data_kind="effective").text == "500"

    def test_the_api_is_mounted_and_described_in_the_openapi_schema(
        self, client: Client, viewer_user: User
    ) -> None:
        client.force_login(viewer_user)

        schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

        for name, url in ENDPOINTS.items():
            assert reverse(name) == url
            assert url in schema["paths"]
        limits = schema["components"]["schemas"]["RiskLimits"]["properties"]
        assert {"size_multiplier", "kill_switch", "rows"} <= set(limits)
