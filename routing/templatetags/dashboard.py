"""Template filters of the dashboard."""

from __future__ import annotations

from html import escape
from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from routing.health import METRIC_FORMATS
from tradingsite.display import NO_VALUE

register = template.Library()

LABELS = {
    "realized_pnl": "realised PnL",
    "unrealized_pnl": "unrealised PnL",
    "trades": "trades",
    "hit_rate": "hit rate",
    "avg_win": "avg win",
    "avg_loss": "avg loss",
    "profit_factor": "profit factor",
    "expectancy": "expectancy",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "max drawdown",
    "fees": "fees",
    "notional": "volume (USDT)",
    "slippage_bps": "slippage (bps)",
    "latency_ms": "submit→ack (ms)",
    "reject_rate": "reject rate",
    "orders": "orders",
    "fills": "fills",
}


@register.filter
def metric_label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


@register.simple_tag
def metrics_table(
    table_id: str, rows: list[dict[str, Any]], columns: tuple[str, ...], first_label: str
) -> SafeString:
    """A metrics table: a row per group, a cell per column with the server-formatted value
    (``data-name`` / ``data-field`` let the page's script update it in place). Built here,
    every value escaped, rather than in a template loop: it is most of the Router Health
    page's rendering (hundreds of cells)."""
    head = "".join(f'<th class="num">{escape(metric_label(c))}</th>' for c in columns)
    if rows:
        body = "".join(
            f'<tr data-name="{escape(row["name"])}"><td>{escape(row["name"])}</td>'
            + "".join(
                f'<td class="num" data-field="{c}">{escape(str(row["display"].get(c, "")))}</td>'
                for c in columns
            )
            + "</tr>"
            for row in rows
        )
    else:
        body = (
            f'<tr class="empty-row"><td colspan="{len(columns) + 1}">'
            "No fill in this window yet.</td></tr>"
        )
    return mark_safe(  # noqa: S308 - every interpolated value is escaped above
        f'<div class="scroll"><table class="grid metrics" id="{escape(table_id)}" '
        f'data-columns="{escape(",".join(columns))}"><thead><tr><th>{escape(first_label)}</th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


NUM_CELL = '<td class="num">'
FILL_COLUMNS = ("at", "source", "symbol", "side", "quantity", "price", "fee", "realized_pnl")


@register.simple_tag
def fills_rows(fills: list[dict[str, Any]]) -> SafeString:
    """The recent fills' rows (the page's script prepends new ones in the same shape)."""
    if not fills:
        return mark_safe(
            '<tr class="empty-row"><td colspan="8">'
            "No fill yet: fills appear here the moment they are booked.</td></tr>"
        )
    rows = []
    for fill in fills:
        values = {**fill, "realized_pnl": fill["realized_pnl"] if fill["closing"] else NO_VALUE}
        cells = "".join(
            (NUM_CELL if i >= 4 else "<td>") + f"{escape(str(values[c]))}</td>"
            for i, c in enumerate(FILL_COLUMNS)
        )
        rows.append(f"<tr>{cells}</tr>")
    return mark_safe("".join(rows))  # noqa: S308 - every value is escaped above


assert set(LABELS) == set(METRIC_FORMATS), "every metric has a label"
