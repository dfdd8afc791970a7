"""Every cost of goods that is not an LLM call, recorded where it is spent: ``record_cost``.

::

    with attribute(feature="support-agent", customer="acme"), unit("ticket", id=ticket.id):
        hits = vector_db.query(...)
        record_cost("0.0004", "orchestration", description="vector search")
        ...
        record_cost("1.50", "support", description="human review")

A cost line is exact money in one of the margin waterfall's categories (:data:`CATEGORIES`),
attributed like a call (feature, customer, tier, cohort from :func:`~otel_margin.attribute`,
baggage or defaults) and grouped into the current unit of work (outside any unit it is its own
unit). It travels as a ``margin.cost_line`` span (:mod:`otel_margin.record_spans`) and lands in
the ``cost_lines`` table. LLM calls are not recorded here: they are already in ``llm_calls``
(category ``inference``, embedding calls ``orchestration``). Fixed costs of a period (GPU
hosting, a vector database cluster) are imported instead: ``otel-margin costs import``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from otel_margin import attributes as attr
from otel_margin import record_spans
from otel_margin.attribution import current_attribution
from otel_margin.outcomes import amount
from otel_margin.telemetry import money
from otel_margin.units import current_unit

CATEGORIES = ("inference", "orchestration", "infrastructure", "support")
"""The margin waterfall's cost categories: LLM calls; embeddings, retrieval, re-ranking; hosting,
GPU, storage; human review, QA."""
MAX_DESCRIPTION = 1024


def record_cost(
    amount_usd: Decimal | str | int | float, category: str, *, description: str | None = None
) -> None:
    """Record ``amount_usd`` dollars of cost of goods of ``category`` for the current unit and attribution.

    Raises ``ValueError`` for an amount that is not a decimal amount of at least 0, a category
    not in :data:`CATEGORIES`, or a description longer than :data:`MAX_DESCRIPTION` characters.
    """
    cost = amount("record_cost", "amount_usd", amount_usd)
    if cost is None or cost < 0:
        raise ValueError(f"record_cost(amount_usd={amount_usd!r}): a cost is an amount of at least 0, e.g. '0.0004'")
    if category not in CATEGORIES:
        raise ValueError(f"record_cost(category={category!r}): not a cost category; use one of {', '.join(CATEGORIES)}")
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise ValueError(f"record_cost(description=...): text of at most {MAX_DESCRIPTION} characters, "
                         f"got {type(description).__name__} of length {len(description) if isinstance(description, str) else '-'}")
    attribution = current_attribution()
    values: dict[str, Any] = {
        attr.MARGIN_COST_LINE_USD: money(cost),
        attr.MARGIN_COST_LINE_CATEGORY: category,
        attr.MARGIN_FEATURE: attribution.feature or attr.UNATTRIBUTED,
    }
    for key, value in ((attr.MARGIN_CUSTOMER, attribution.customer), (attr.MARGIN_TIER, attribution.tier),
                       (attr.MARGIN_COHORT, attribution.cohort)):
        if value is not None:
            values[key] = value
    found = current_unit()
    if found is not None:
        values[attr.MARGIN_UNIT_ID], values[attr.MARGIN_UNIT_KIND] = found.id, found.kind
    if description:
        values[attr.MARGIN_COST_LINE_DESCRIPTION] = description
    record_spans.emit(f"margin.cost_line {category}", values)
