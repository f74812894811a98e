"""Project-wide precision for money, quantities, prices and fractions, and the one quantize helper.

Money and quantities are ``Decimal`` everywhere outside vectorised analytics; floats are
converted at the boundary with ``to_decimal`` (via ``str``, never ``Decimal(float)``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

DECIMAL_PLACES = 8  # USDT amounts, quantities, prices and fractions (0.00000001)
MAX_DIGITS = 28
STEP = Decimal(1).scaleb(-DECIMAL_PLACES)


def quantize(value: Decimal, *, places: int = DECIMAL_PLACES) -> Decimal:
    """Round half-even to ``places`` decimals (the stored precision of every amount)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def to_decimal(value: float | int | str | Decimal, *, places: int = DECIMAL_PLACES) -> Decimal:
    """Convert a float from analytics (or any number) to a quantized Decimal."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value}")
        value = repr(value)
    return quantize(Decimal(value), places=places)
