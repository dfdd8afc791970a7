"""Gross margin, as Python rows, from the margin SQL.

Gross margin = (revenue − cost of goods) / revenue, in dollars and in percent, at every
level the method asks for: aggregate, feature, tier, customer, cohort; per day with rolling
3- and 7-day windows; per week with 4-week trailing figures; plus the cost map per feature
and the per-customer revenue-vs-margin scatter.

Every function runs one query from ``otel_margin/analysis/sql/`` (loaded by
:func:`otel_margin.analysis.queries.query`) with all values bound as parameters, over the
``margin_daily`` view (which reads only the days a query asks for) and the rollups. Money is summed as ``Decimal(38, 12)`` in SQL and
arrives here as :class:`~decimal.Decimal`. Cost counts priced calls only; unpriced calls
are reported in ``unpriced_calls`` and never enter a sum as 0 USD — a margin with
``unpriced_calls > 0`` is an upper bound. Failed calls are counted in ``error_calls``: one
the provider reported no usage for costs nothing and earns no usage revenue (it is not
unpriced).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, Literal, get_args

from otel_margin import schema
from otel_margin.analysis.allocation import ALLOCATE_BY, DEFAULT_ALLOCATE_BY, AllocateBy, allocation
from otel_margin.analysis.queries import query
from otel_margin.policy import Policy

Level = Literal["all", "feature", "tier", "customer", "cohort", "model", "unit_kind"]
LEVELS: tuple[str, ...] = get_args(Level)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class MarginRow:
    """Margin of one key (a feature, tier, customer, cohort, or ``all``) over a range."""

    key: str
    calls: int
    unpriced_calls: int
    error_calls: int
    """Failed calls (``error.type`` set); one without usage has no cost and no usage revenue."""
    revenue_usd: Decimal
    cost_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal | None
    """``None`` when there is no revenue."""
    inference_usd: Decimal = _ZERO
    """``cost_usd`` by waterfall category (they add up to it); see :mod:`otel_margin.analysis.waterfall`."""
    orchestration_usd: Decimal = _ZERO
    infrastructure_usd: Decimal = _ZERO
    support_usd: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class DailyMarginRow:
    """One day of one key, with the rolling 3- and 7-day margins ending that day."""

    day: date
    key: str
    calls: int
    unpriced_calls: int
    error_calls: int
    """Failed calls (``error.type`` set); one without usage has no cost and no usage revenue."""
    revenue_usd: Decimal
    cost_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal | None
    margin_3d_usd: Decimal
    margin_3d_pct: Decimal | None
    margin_7d_usd: Decimal
    margin_7d_pct: Decimal | None


@dataclass(frozen=True, slots=True)
class WeeklyMarginRow:
    """One week (starting Monday) of one key, with 4-week trailing figures."""

    week: date
    key: str
    calls: int
    unpriced_calls: int
    error_calls: int
    """Failed calls (``error.type`` set); one without usage has no cost and no usage revenue."""
    revenue_usd: Decimal
    cost_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal | None
    margin_4w_avg_usd: Decimal
    """Average weekly margin over this week and the 3 before it (weeks with rows)."""
    margin_4w_pct: Decimal | None
    """Margin % of those weeks pooled: their margin over their revenue."""


@dataclass(frozen=True, slots=True)
class CostMapRow:
    """What one request of a feature costs: exact averages and a P95 per component.

    Averages are over priced calls (``None`` if there are none). P95 values come from a
    DDSketch in the daily cost rollup: within about one sketch bucket (2-3 %) of the true order statistic.
    """

    feature: str
    calls: int
    priced_calls: int
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    avg_cost_usd: Decimal | None
    avg_input_usd: Decimal | None
    avg_cache_read_usd: Decimal | None
    avg_cache_write_usd: Decimal | None
    avg_output_usd: Decimal | None
    avg_other_usd: Decimal | None
    p95_cost_usd: Decimal | None
    p95_input_usd: Decimal | None
    p95_cache_read_usd: Decimal | None
    p95_cache_write_usd: Decimal | None
    p95_output_usd: Decimal | None
    p95_other_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class CustomerPoint:
    """One customer on the revenue-vs-margin scatter."""

    customer: str
    tier: str
    calls: int
    unpriced_calls: int
    error_calls: int
    """Failed calls (``error.type`` set); one without usage has no cost and no usage revenue."""
    revenue_usd: Decimal
    cost_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal | None


def margin_by(
    client: Any,
    level: Level,
    *,
    start: date,
    end: date,
    feature: str | None = None,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[MarginRow]:
    """Gross margin per ``level`` over the days ``start``..``end`` (inclusive), worst first.

    Revenue and cost of goods are every source (docs/margin.md): usage, outcome and allocated
    subscription revenue; inference, orchestration, infrastructure and support costs. ``feature``
    restricts to one feature; ``allocate_by`` and ``policy`` (its value weights and AI shares;
    ``None`` reads the policy file) decide how subscription revenue and period costs are split.
    """
    parameters = _parameters(level, start, end, feature, allocate_by, policy)
    rows = _run(client, "margin_by_level_query", database, parameters)
    categories = ("inference_usd", "orchestration_usd", "infrastructure_usd", "support_usd")
    return [
        MarginRow(
            **_shared_fields(row),
            margin_pct=row["margin_pct"],
            **{name: row[name] for name in categories},
        )
        for row in rows
    ]


def daily_margin(
    client: Any,
    *,
    start: date,
    end: date,
    level: Level = "all",
    feature: str | None = None,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[DailyMarginRow]:
    """Margin per day and key, with rolling 3- and 7-day margins, ordered by key then day.

    Only days with rows appear; the rolling windows are calendar days (a quiet day
    contributes nothing) and include days before ``start``.
    """
    rows = _run(
        client, "margin_daily_series_query", database, _parameters(level, start, end, feature, allocate_by, policy)
    )
    return [
        DailyMarginRow(
            day=row["day"],
            **_shared_fields(row),
            margin_pct=margin_pct(row["revenue_usd"], row["cost_usd"]),
            margin_3d_usd=row["revenue_3d_usd"] - row["cost_3d_usd"],
            margin_3d_pct=margin_pct(row["revenue_3d_usd"], row["cost_3d_usd"]),
            margin_7d_usd=row["revenue_7d_usd"] - row["cost_7d_usd"],
            margin_7d_pct=margin_pct(row["revenue_7d_usd"], row["cost_7d_usd"]),
        )
        for row in rows
    ]


def weekly_margin(
    client: Any,
    *,
    start: date,
    end: date,
    level: Level = "all",
    feature: str | None = None,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[WeeklyMarginRow]:
    """Margin per week (Monday start) and key, with 4-week trailing averages.

    Weeks from the one containing ``start`` to the one containing ``end``; the trailing
    windows reach back 3 weeks before it. The last week may be partial (up to ``end``).
    """
    rows = _run(
        client, "margin_weekly_series_query", database, _parameters(level, start, end, feature, allocate_by, policy)
    )
    return [
        WeeklyMarginRow(
            week=row["week"],
            **_shared_fields(row),
            margin_pct=margin_pct(row["revenue_usd"], row["cost_usd"]),
            margin_4w_avg_usd=_divide(row["revenue_4w_usd"] - row["cost_4w_usd"], row["weeks_4w"]),
            margin_4w_pct=margin_pct(row["revenue_4w_usd"], row["cost_4w_usd"]),
        )
        for row in rows
    ]


def cost_map(
    client: Any,
    *,
    start: date,
    end: date,
    feature: str | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[CostMapRow]:
    """The cost map per feature over ``start``..``end``, most expensive feature first."""
    parameters = {"start": start, "end": end, "feature": feature or ""}
    _check_range(start, end)
    rows = _run(client, "cost_map_query", database, parameters)
    result = []
    for row in rows:
        fields = {name: row[name] for name in CostMapRow.__slots__ if not name.startswith("p95_")}
        fields.update({name: _sketch(row[name]) for name in CostMapRow.__slots__ if name.startswith("p95_")})
        result.append(CostMapRow(**fields))
    return result


def customer_scatter(
    client: Any,
    *,
    start: date,
    end: date,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[CustomerPoint]:
    """Revenue and margin per customer, highest revenue first (the scatter's points)."""
    rows = _run(client, "customer_scatter_query", database, _parameters("customer", start, end, None, allocate_by, policy))
    return [CustomerPoint(**{name: row[name] for name in CustomerPoint.__slots__}) for row in rows]


def negative_margin_customers(
    client: Any,
    *,
    start: date,
    end: date,
    limit: int = 10,
    feature: str | None = None,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[MarginRow]:
    """The ``limit`` customers losing the most money (margin below 0 USD), worst first."""
    rows = margin_by(
        client, "customer", start=start, end=end, feature=feature, allocate_by=allocate_by, policy=policy,
        database=database,
    )
    return [row for row in rows if row.margin_usd < 0][:limit]


@dataclass(frozen=True, slots=True)
class GuardrailRow:
    """What the guardrails did for one feature: the cache's hits and the money each lever saved."""

    feature: str
    calls: int
    cache_lookups: int
    """Calls the cache looked up (hits and misses; not the calls it would not cache)."""
    exact_hits: int
    semantic_hits: int
    cache_saved_usd: Decimal
    """The cost the hits avoided: each stored answer's original cost."""
    cache_cost_usd: Decimal
    """What the cache itself spent on its lookups (provider embeddings; 0 for the built-in CPU embedder)."""
    cache_net_saved_usd: Decimal
    """``cache_saved_usd − cache_cost_usd``: the dollars the cache avoided, net of its own cost."""
    routed_calls: int
    route_saved_usd: Decimal
    capped_calls: int
    blocked_calls: int
    hit_rate: Decimal | None
    """Hits over lookups, 0..1 (``None`` without lookups)."""
    cache_hint: str
    """The method's tuning rule: under 15 % refine the key (try semantic), over 50 % lengthen TTLs."""


def _cache_hint(hit_rate: Decimal | None) -> str:
    if hit_rate is None:
        return ""
    if hit_rate < Decimal("0.15"):
        return "hit rate under 15 %: refine the key or try semantic matching"
    if hit_rate > Decimal("0.50"):
        return "hit rate over 50 %: consider longer TTLs"
    return ""


def guardrails(
    client: Any, *, start: date, end: date, feature: str | None = None, tier: str | None = None,
    customer: str | None = None, database: str = schema.DEFAULT_DATABASE
) -> list[GuardrailRow]:
    """Guardrail effectiveness per feature over ``start``..``end``, biggest saving first
    (``feature``, ``tier``, ``customer``: only those calls)."""
    _check_range(start, end)
    parameters = {"start": start, "end": end, "feature": feature or "", "tier": tier or "", "customer": customer or ""}
    rows = _run(client, "guardrails_query", database, parameters)
    result = []
    for row in rows:
        hits, lookups = row["exact_hits"] + row["semantic_hits"], row["cache_lookups"]
        hit_rate = (Decimal(hits) / lookups).quantize(Decimal("0.0001")) if lookups else None
        fields = {name: row[name] for name in GuardrailRow.__slots__ if name not in ("hit_rate", "cache_hint")}
        result.append(GuardrailRow(**fields, hit_rate=hit_rate, cache_hint=_cache_hint(hit_rate)))
    return result


def margin_pct(revenue_usd: Decimal, cost_usd: Decimal) -> Decimal | None:
    """``(revenue − cost) / revenue × 100``, or ``None`` without revenue.

    Truncated to 12 decimal places, as ClickHouse's ``Decimal(38, 12)`` division does, so
    Python-side and SQL-side percentages agree exactly.
    """
    if revenue_usd == 0:
        return None
    with localcontext() as context:
        context.prec = 80  # Decimal(38, 12) operands: exact until the final truncation
        return ((revenue_usd - cost_usd) * 100 / revenue_usd).quantize(_SCALE, rounding=ROUND_DOWN)


# --- running queries -------------------------------------------------------------------------

_SCALE = Decimal(1).scaleb(-12)


def _shared_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every margin row takes from its query row as they are."""
    names = ("key", "calls", "unpriced_calls", "error_calls", "revenue_usd", "cost_usd", "margin_usd")
    return {name: row[name] for name in names}


def _parameters(
    level: str, start: date, end: date, feature: str | None, allocate_by: str, policy: Policy | None
) -> dict[str, Any]:
    level_key(level)
    if allocate_by not in ALLOCATE_BY:
        raise ValueError(f"allocate_by {allocate_by!r} is not one of {', '.join(ALLOCATE_BY)}")
    _check_range(start, end)
    rule = allocation(allocate_by, policy)
    return {"level": level, "start": start, "end": end, "feature": feature or "", **rule.parameters()}


def _check_range(start: date, end: date) -> None:
    if end < start:
        raise ValueError(f"date range {start}..{end} ends before it starts; swap the dates")


def level_key(level: str) -> str:
    """The SQL of ``level``'s key in a margin query: its ``margin_daily`` column, or ``'all'``."""
    if level not in LEVELS:
        raise ValueError(f"margin level {level!r} is not one of {', '.join(LEVELS)}")
    return "'all'" if level == "all" else schema.quote_identifier(level)


def _run(client: Any, name: str, database: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a margin query; a ``level`` among the parameters becomes its ``$key`` column."""
    parameters = dict(parameters)
    level = parameters.pop("level", None)
    sql = query(name, database=database, key=None if level is None else level_key(level))
    return list(client.query(sql, parameters=parameters).named_results())


def _divide(amount: Decimal, count: int) -> Decimal:
    if not count:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 80
        return (amount / count).quantize(_SCALE, rounding=ROUND_DOWN)


def _sketch(value: float | None) -> Decimal | None:
    # A DDSketch estimate is a float; it becomes money only after rounding to 12 places.
    if value is None or value != value:  # NULL or NaN (no priced calls)
        return None
    return Decimal(repr(value)).quantize(_SCALE)
