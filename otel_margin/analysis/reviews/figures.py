"""How the reviews write numbers: dollars, percentages and points, exact Decimals rounded only here."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal


def usd(amount: Decimal | None) -> str:
    """``$1,234.56``; under a dollar four decimals (``$0.0042``), so small sums do not read as zero."""
    if amount is None:
        return "—"
    places = Decimal("0.01") if abs(amount) >= 1 or amount == 0 else Decimal("0.0001")
    rounded = amount.quantize(places, rounding=ROUND_HALF_EVEN)
    return f"-${-rounded:,}" if rounded < 0 else f"${rounded:,}"


def pct(value: Decimal | None) -> str:
    """``55.0 %`` (one decimal), ``—`` when undefined (no revenue)."""
    if value is None:
        return "—"
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)} %"


def points(value: Decimal | None) -> str:
    """A difference of percentages: ``+3.2 pts``."""
    if value is None:
        return "—"
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN):+} pts"
