"""How numbers are shown: one formatter for every page, API response and live push, so the
three always agree (selectors format on the server; pages never reformat)."""

from __future__ import annotations

import math
from collections.abc import Callable

NO_VALUE = "\N{EN DASH}"

# style -> format; "signed_percent" keeps its sign, every style shows a value that rounds to
# zero as zero ("0.00", never "-0.00").
_FORMATS: dict[str, Callable[[float], str]] = {
    "money": lambda v: f"{v:,.2f}",
    "ratio": lambda v: f"{v:.2f}",
    "bps": lambda v: f"{v:.2f}",
    "fixed3": lambda v: f"{v:.3f}",
    "fixed4": lambda v: f"{v:.4f}",
    "count": lambda v: f"{round(v):,}",
    "percent": lambda v: f"{v * 100:.1f}%",
    "percent2": lambda v: f"{v * 100:.2f}%",
    "signed_percent": lambda v: f"{v * 100:+.1f}%",
    "ms": lambda v: f"{v:.0f}",
    "ms_tenths": lambda v: f"{v:,.1f}",
}


def number_text(style: str, value: float | None) -> str:
    """``value`` shown in ``style`` (a key of ``_FORMATS``); ``NO_VALUE`` without a finite one.
    Raises ``ValueError`` for an unknown style."""
    try:
        shown = _FORMATS[style]
    except KeyError:
        raise ValueError(f"no display format {style!r}") from None
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return NO_VALUE
    text = shown(value)
    if not any(digit in "123456789" for digit in text):
        text = text.lstrip("+-")
        if style == "signed_percent":
            text = f"+{text}"
    return text
