"""Cost trends: is a feature's (or a model's) cost per request stable, improving or degrading?

The rule (documented in ``docs/reviews.md``): fit a least-squares line through the cost per
request of each period that had priced calls — x is the period's position (0, 1, 2, 3 for the
four weeks of a weekly review; months for the quarterly one; a period without priced calls is
left out, not counted as 0) — and divide its slope by the mean cost per request of those
periods. That is the change per period relative to the level. Above ``+threshold`` (5 % by
default) it is **degrading** (a request costs more each period), below ``-threshold`` it is
**improving**, in between **stable**. Fewer than two periods with priced calls, or a mean of 0,
is **not enough data**. Exact: the slope is computed with fractions from Decimal costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal, Sequence

Label = Literal["stable", "improving", "degrading", "not enough data"]

DEFAULT_THRESHOLD_PCT = Decimal(5)
"""The band, in % of the mean per period, inside which a trend is ``stable``."""


@dataclass(frozen=True, slots=True)
class Trend:
    """The label and the numbers behind it."""

    label: Label
    relative_slope_pct: Decimal | None
    """Slope of cost per request per period, in % of the mean (``None`` when not enough data)."""
    points: int
    """Periods with priced calls that the line was fitted to."""


def label_trend(points: Sequence[tuple[int, Decimal | None]], threshold_pct: Decimal = DEFAULT_THRESHOLD_PCT) -> Trend:
    """The trend of ``points``: ``(period position, cost per request or None)`` pairs.

    ``None`` (no priced calls in that period) is left out of the fit.
    """
    known = [(Fraction(x), Fraction(y)) for x, y in points if y is not None]
    if len(known) < 2:
        return Trend("not enough data", None, len(known))
    n = len(known)
    mean_x = sum(x for x, _ in known) / n
    mean_y = sum(y for _, y in known) / n
    spread = sum((x - mean_x) ** 2 for x, _ in known)
    if spread == 0 or mean_y == 0:
        return Trend("not enough data", None, n)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in known) / spread
    relative = slope / mean_y * 100
    threshold = Fraction(threshold_pct)
    label: Label = "degrading" if relative > threshold else "improving" if relative < -threshold else "stable"
    return Trend(label, _decimal(relative), n)


def _decimal(value: Fraction) -> Decimal:
    """A percentage for display: 2 decimals (the label was decided on the exact value)."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"))
