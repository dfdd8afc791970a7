"""The margin waterfall: revenue − inference − orchestration − infrastructure − support = gross margin.

One row per key of a level (``all``, ``feature``, ``tier``, ``customer``, ``cohort``, ``model``,
``unit_kind``) over a date range, from ``margin_daily`` (``otel_margin/sql/margin_daily_view.sql``),
which brings every revenue and cost source together:

* revenue = usage revenue on the calls (a failed call earns none) + outcome revenue (each unit's
  outcome, counted once, on its day) + subscription revenue allocated (its tier's AI share);
* cost of goods = inference (LLM calls other than embeddings) + orchestration (embedding calls,
  orchestration cost lines) + infrastructure + support (cost lines), each with the period costs
  allocated to it.

Money is exact ``Decimal``; the four categories add up to ``cost_usd`` and the three revenue
sources to ``revenue_usd``. ``gross_margin_pct`` is truncated to 12 places (``None`` without
revenue). Allocation rules: :mod:`otel_margin.analysis.allocation` and docs/margin.md.

At level ``model``, what belongs to no model (outcome and subscription revenue, cost lines,
period costs) is under the key ``""``: a model's row is its calls. At level ``unit_kind``, calls
and costs outside any unit are under ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from otel_margin import schema
from otel_margin.analysis.allocation import DEFAULT_ALLOCATE_BY, AllocateBy
from otel_margin.analysis.margin import Level, _parameters, _run
from otel_margin.policy import Policy


@dataclass(frozen=True, slots=True)
class WaterfallRow:
    """The margin waterfall of one key over a range."""

    key: str
    calls: int
    inference_calls: int
    """Calls other than embeddings: the weight of the default allocation."""
    unpriced_calls: int
    """Calls without a price: their cost is missing (never 0), so the margin is an upper bound."""
    error_calls: int
    usage_revenue_usd: Decimal
    outcome_revenue_usd: Decimal
    subscription_revenue_usd: Decimal
    revenue_usd: Decimal
    """``usage + outcome + subscription``."""
    inference_usd: Decimal
    orchestration_usd: Decimal
    infrastructure_usd: Decimal
    support_usd: Decimal
    cost_usd: Decimal
    """Cost of goods: the four categories' sum."""
    gross_margin_usd: Decimal
    gross_margin_pct: Decimal | None
    """``None`` when there is no revenue."""


def waterfall(
    client: Any,
    *,
    level: Level = "all",
    start: date,
    end: date,
    feature: str | None = None,
    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY,
    policy: Policy | None = None,
    database: str = schema.DEFAULT_DATABASE,
) -> list[WaterfallRow]:
    """The waterfall per ``level`` key over ``start``..``end`` (inclusive), worst gross margin first.

    ``feature`` restricts to one feature. ``allocate_by`` (``calls`` — inference calls, the
    default —, ``cost``, ``tokens`` or ``value``) and ``policy`` (its ``value_weight`` per feature
    and ``ai_share_pct`` per tier; ``None`` reads the policy file) decide how subscription revenue
    and period costs are split.
    """
    parameters = _parameters(level, start, end, feature, allocate_by, policy)
    rows = _run(client, "waterfall_query", database, parameters)
    return [WaterfallRow(**{name: row[name] for name in WaterfallRow.__slots__}) for row in rows]
