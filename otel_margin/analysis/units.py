"""Units of work, analysed: cost per unit, margin per outcome, units left without an outcome.

A business prices a ticket resolved or a document analysed, so the figures that matter are per
**unit of work** (``otel_margin.unit``), not per call. Every function runs one query in
``otel_margin/analysis/sql/`` over the ``units_daily`` rollup and the ``outcomes`` table with the
rules of the ``units`` view (one row per unit active in the range: its calls, its cost of goods by
waterfall category, its outcome and outcome revenue), aggregating per unit only what it needs;
all values are bound as parameters, and the results are frozen dataclasses with exact
:class:`~decimal.Decimal` money.

* :func:`cost_per_unit` — per unit kind and feature: units, average, P50, P95 and maximum cost
  of one unit (exact: the percentiles are actual units' costs, not estimates);
* :func:`outcome_groups` — units grouped by kind, feature and outcome, with their revenue and
  cost; :func:`margin_per_outcome` and :func:`unit_summary` add those groups up (margin per
  outcome status; the units without an outcome and the cost of failed units). The full waterfall
  per unit kind, with subscription revenue and period costs allocated, is
  :func:`otel_margin.analysis.waterfall.waterfall` at level ``unit_kind``.

A unit without a recorded outcome is ``abandoned`` once ``grace_minutes`` have passed since its
last call or cost line, ``open`` until then. Calls outside any unit are units of kind ``''``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Iterable

from otel_margin import schema
from otel_margin.analysis.margin import margin_pct
from otel_margin.analysis.queries import query

DEFAULT_GRACE_MINUTES = 60
"""How long a unit without an outcome stays ``open`` before it counts as ``abandoned``."""

FAILED = "failed"
"""The outcome status whose units' cost the report calls the cost of failed units."""

OUTSIDE_UNITS = "outside any unit"
"""The outcome :func:`margin_per_outcome` gives calls made outside any unit (each its own unit of
kind ``''``): nothing was expected of them, so they are not counted as abandoned or open."""

_SCALE = Decimal(1).scaleb(-12)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class UnitCostRow:
    """What one unit of a kind costs, for one feature: exact average, P50, P95 and maximum."""

    unit_kind: str
    """``''`` for calls made outside any unit (each its own unit)."""
    feature: str
    units: int
    calls: int
    cost_usd: Decimal
    """All four waterfall categories of these units' own costs (period costs are not per unit)."""
    avg_cost_usd: Decimal
    p50_cost_usd: Decimal
    p95_cost_usd: Decimal
    max_cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class OutcomeGroup:
    """The units of one kind and feature that share an outcome, and what they earned and cost."""

    unit_kind: str
    feature: str
    outcome: str
    recorded: bool
    """False for units without a recorded outcome (``abandoned`` or ``open``)."""
    units: int
    revenue_usd: Decimal
    cost_usd: Decimal
    """All four waterfall categories of these units' own costs (the waterfall per unit kind splits them)."""


@dataclass(frozen=True, slots=True)
class OutcomeMarginRow:
    """Margin of the units of one feature that reached one outcome (``failed`` earns nothing)."""

    feature: str
    outcome: str
    recorded: bool
    units: int
    revenue_usd: Decimal
    cost_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal | None
    revenue_per_unit_usd: Decimal
    cost_per_unit_usd: Decimal


@dataclass(frozen=True, slots=True)
class UnitSummary:
    """Units in the range, those still without an outcome, and what failed units cost."""

    units: int
    with_outcome: int
    abandoned_units: int
    abandoned_cost_usd: Decimal
    open_units: int
    open_cost_usd: Decimal
    outside_units: int
    """Calls made outside any unit, without an outcome (never abandoned: no unit was opened)."""
    outside_cost_usd: Decimal
    failed_units: int
    failed_cost_usd: Decimal
    failed_revenue_usd: Decimal


def cost_per_unit(
    client: Any,
    *,
    start: date,
    end: date,
    feature: str | None = None,
    grace_minutes: int = DEFAULT_GRACE_MINUTES,
    database: str = schema.DEFAULT_DATABASE,
) -> list[UnitCostRow]:
    """Cost per unit per (unit kind, feature) over ``start``..``end``, most expensive first.

    The average is the exact total over the units, truncated to 12 places; P50 and P95 are the
    costs of the units at ``floor(0.5 n)`` and ``floor(0.95 n)`` of the sorted costs.
    """
    rows = _run(client, "unit_costs_query", database, _parameters(start, end, feature, grace_minutes))
    return [
        UnitCostRow(
            unit_kind=row["unit_kind"], feature=row["feature"], units=row["units"], calls=row["calls"],
            cost_usd=row["cost_usd"], avg_cost_usd=_divide(row["cost_usd"], row["units"]),
            p50_cost_usd=row["quantiles"][0], p95_cost_usd=row["quantiles"][1], max_cost_usd=row["max_cost_usd"],
        )
        for row in rows
    ]


def outcome_groups(
    client: Any,
    *,
    start: date,
    end: date,
    feature: str | None = None,
    grace_minutes: int = DEFAULT_GRACE_MINUTES,
    database: str = schema.DEFAULT_DATABASE,
) -> list[OutcomeGroup]:
    """The units of ``start``..``end`` grouped by kind, feature and outcome (one query; the
    functions below add these groups up without reading the store again)."""
    rows = _run(client, "unit_outcomes_query", database, _parameters(start, end, feature, grace_minutes))
    return [OutcomeGroup(**{name: row[name] for name in OutcomeGroup.__slots__ if name != "recorded"},
                         recorded=bool(row["recorded"])) for row in rows]


def margin_per_outcome(groups: Iterable[OutcomeGroup]) -> list[OutcomeMarginRow]:
    """Margin per (feature, outcome), worst margin first."""
    totals: dict[tuple[str, str, bool], list[Any]] = {}
    for group in groups:
        outcome = group.outcome if group.recorded or group.unit_kind else OUTSIDE_UNITS
        total = totals.setdefault((group.feature, outcome, group.recorded), [0, _ZERO, _ZERO])
        total[0] += group.units
        total[1] += group.revenue_usd
        total[2] += group.cost_usd
    rows = [
        OutcomeMarginRow(
            feature=feature, outcome=outcome, recorded=recorded, units=units, revenue_usd=revenue, cost_usd=cost,
            margin_usd=revenue - cost, margin_pct=margin_pct(revenue, cost),
            revenue_per_unit_usd=_divide(revenue, units), cost_per_unit_usd=_divide(cost, units),
        )
        for (feature, outcome, recorded), (units, revenue, cost) in totals.items()
    ]
    return sorted(rows, key=lambda row: (row.margin_usd, row.feature, row.outcome))


def unit_summary(groups: Iterable[OutcomeGroup]) -> UnitSummary:
    """How many units there were, how many have no outcome yet (abandoned or open) and what they
    cost, and what the units that failed cost (and earned)."""
    counts = dict.fromkeys(("units", "with_outcome", "abandoned_units", "open_units", "outside_units",
                            "failed_units"), 0)
    money = dict.fromkeys(("abandoned_cost_usd", "open_cost_usd", "outside_cost_usd", "failed_cost_usd",
                           "failed_revenue_usd"), _ZERO)
    for group in groups:
        counts["units"] += group.units
        if group.recorded:
            counts["with_outcome"] += group.units
            if group.outcome == FAILED:
                counts["failed_units"] += group.units
                money["failed_cost_usd"] += group.cost_usd
                money["failed_revenue_usd"] += group.revenue_usd
        else:  # the view says 'abandoned' after the grace period, 'open' before
            state = "outside" if not group.unit_kind else "abandoned" if group.outcome == "abandoned" else "open"
            counts[f"{state}_units"] += group.units
            money[f"{state}_cost_usd"] += group.cost_usd
    return UnitSummary(**counts, **money)


# --- running queries -------------------------------------------------------------------------


def _parameters(start: date, end: date, feature: str | None, grace_minutes: int) -> dict[str, Any]:
    if end < start:
        raise ValueError(f"date range {start}..{end} ends before it starts; swap the dates")
    if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) or not 0 <= grace_minutes < 2**32:
        raise ValueError(f"grace_minutes {grace_minutes!r} is not a whole number of minutes from 0; use e.g. 60")
    return {"start": start, "end": end, "feature": feature or "", "grace_minutes": grace_minutes}


def _run(client: Any, name: str, database: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.query(query(name, database=database), parameters=parameters).named_results())


def _divide(amount: Decimal, count: int) -> Decimal:
    """``amount / count`` truncated to the stored 12 places, as ClickHouse's Decimal division."""
    if not count:
        return _ZERO
    with localcontext() as context:
        context.prec = 80
        return (amount / count).quantize(_SCALE, rounding=ROUND_DOWN)
