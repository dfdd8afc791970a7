"""The margin improvement backlog: what each lever is worth, in estimated dollars per quarter.

Four kinds of item, each estimated from the calls of a window (the weekly review's: the four
weeks ending with the week reviewed) and scaled to a quarter of 91 days (``× 91 / window days``;
13/4 for four weeks). Every item carries the method that produced it, shown beside the figure.
They are **estimates**, and they overlap (a cache that serves a repeat also lifts its feature
toward its floor): rank by them, do not add them up. ``docs/reviews.md`` states each method.

* **cache** — repeated requests a response cache would have served: calls whose request
  fingerprint (``request_hash``) repeats one the same customer made earlier in the window; their
  cost is avoidable. An upper bound: it ignores entry lifetimes (TTL) and counts sampled requests
  (temperature above 0) that the cache serves only where the feature allows it.
* **cheaper model** — small calls (under ``small_output_tokens`` output tokens) of a feature on
  one model, repriced at the cheapest other model of the same provider that the application
  already calls for generation (so one known to work in its stack), at today's catalog and policy
  prices, on the group's summed tokens (a model with long-context tiers is then priced at its
  top tier, which only makes the saving smaller). A quality check is the user's: it is labelled
  an estimate.
* **customer below cost** — customers whose margin over the window is negative: the loss is what
  repricing them to break even recovers.
* **feature below floor** — features structurally under their floor (below it in at least 3 of
  every 4 weeks with revenue, and over the window as a whole): the dollars between their margin
  and the floor (``revenue × floor % − margin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal, Sequence

from otel_margin.analysis import margin
from otel_margin.analysis.reviews import data
from otel_margin.analysis.reviews.figures import pct as _pct
from otel_margin.analysis.reviews.figures import usd as _usd
from otel_margin.analysis.zones import Floor, Floors, StrategicException
from otel_margin.call import Usage

Kind = Literal["cache", "cheaper model", "customer below cost", "feature below floor"]

QUARTER_DAYS = 91
"""A quarter, for scaling: 13 weeks."""
GENERATION = frozenset({"chat", "text_completion", "generate_content"})
"""Operations a cheaper generation model can take over (not embeddings)."""
STRUCTURAL_SHARE = Decimal("0.75")
"""Below the floor in at least this share of the weeks with revenue: structurally, not a bad week."""

_SCALE = Decimal(1).scaleb(-12)


@dataclass(frozen=True, slots=True)
class BacklogItem:
    """One lever: what it is worth over the window and per quarter, and how that was estimated."""

    kind: Kind
    subject: str
    """The feature, customer, or ``feature: model → cheaper model``."""
    window_usd: Decimal
    quarter_usd: Decimal
    method: str
    """The estimate's method, with this item's own numbers."""


@dataclass(frozen=True, slots=True)
class StructuralGap:
    """A feature under its floor over a window, and how often week by week."""

    feature: str
    floor: Floor
    exception: StrategicException | None
    weeks_with_revenue: int
    weeks_below: int
    revenue_usd: Decimal
    margin_usd: Decimal
    margin_pct: Decimal
    gap_usd: Decimal
    """``revenue × floor % − margin`` over the window: the margin missing to reach the floor."""
    unpriced_calls: int


def per_quarter(amount: Decimal, window_days: int) -> Decimal:
    """``amount`` over ``window_days`` scaled to :data:`QUARTER_DAYS` (12 decimals, half-even)."""
    with localcontext() as context:
        context.prec = 80
        return (amount * QUARTER_DAYS / window_days).quantize(_SCALE, rounding=ROUND_HALF_EVEN)


def build_backlog(
    client: Any,
    *,
    start: date,
    end: date,
    floors: Floors,
    catalog: Any,
    small_output_tokens: int,
    database: str,
) -> list[BacklogItem]:
    """Every backlog item over ``start``..``end``, most dollars per quarter first."""
    days = (end - start).days + 1
    items = (
        cache_items(client, start=start, end=end, days=days, database=database)
        + cheaper_model_items(client, start=start, end=end, days=days, catalog=catalog,
                              small_output_tokens=small_output_tokens, database=database)
        + customer_items(client, start=start, end=end, days=days, database=database)
        + floor_items(structural_gaps(client, start=start, end=end, floors=floors, database=database), days)
    )
    return sorted(items, key=lambda item: (-item.quarter_usd, item.kind, item.subject))


def cache_items(client: Any, *, start: date, end: date, days: int, database: str) -> list[BacklogItem]:
    """(a) repeated requests a cache would have served, one item per feature."""
    return [
        BacklogItem(
            "cache", row.feature, row.avoidable_usd, per_quarter(row.avoidable_usd, days),
            f"{row.avoidable_calls} repeat call(s) of {row.repeated_requests} identical request(s) from "
            f"{row.customers} customer(s) in {days} days; the repeats' cost (upper bound: no TTL)",
        )
        for row in data.repeated_requests(client, start=start, end=end, database=database)
        if row.avoidable_usd > 0
    ]


def cheaper_model_items(
    client: Any, *, start: date, end: date, days: int, catalog: Any, small_output_tokens: int, database: str
) -> list[BacklogItem]:
    """(b) small calls a cheaper model of the same provider could carry, one item per feature and model."""
    used: dict[str, set[str]] = {}
    for model in data.models_in_use(client, start=start, end=end, database=database):
        if model.operation in GENERATION:
            used.setdefault(model.provider, set()).add(model.model)
    items = []
    for group in data.small_calls(client, start=start, end=end, small_output_tokens=small_output_tokens,
                                  database=database):
        usage = Usage(input_tokens=group.input_tokens, output_tokens=group.output_tokens,
                      cache_read_tokens=group.cache_read_tokens, cache_write_tokens=group.cache_write_tokens,
                      reasoning_tokens=group.reasoning_tokens)
        best: tuple[Decimal, str] | None = None
        for candidate in sorted(used.get(group.provider, ()) - {group.model}):
            cost = catalog.price(group.provider, candidate, usage).total
            if cost is not None and (best is None or cost < best[0]):
                best = (cost, candidate)
        if best is None or best[0] >= group.cost_usd:
            continue
        saving = group.cost_usd - best[0]
        items.append(BacklogItem(
            "cheaper model", f"{group.feature}: {group.model} → {best[1]}", saving, per_quarter(saving, days),
            f"{group.calls} call(s) under {small_output_tokens} output tokens cost {_usd(group.cost_usd)}; "
            f"the same tokens on {best[1]} ({group.provider}, already in use) cost {_usd(best[0])} at today's "
            "prices (estimate: quality unchecked)",
        ))
    return items


def customer_items(client: Any, *, start: date, end: date, days: int, database: str) -> list[BacklogItem]:
    """(c) customers priced below their cost, one item per customer losing money."""
    items = []
    for row in margin.margin_by(client, "customer", start=start, end=end, database=database):
        if row.margin_usd >= 0 or not row.key:
            continue  # calls without a customer are not a customer to reprice
        loss = -row.margin_usd
        unpriced = f"; {row.unpriced_calls} unpriced call(s): the loss is at least this" if row.unpriced_calls else ""
        items.append(BacklogItem(
            "customer below cost", row.key, loss, per_quarter(loss, days),
            f"revenue {_usd(row.revenue_usd)} against cost {_usd(row.cost_usd)} in {days} days: "
            f"the loss that repricing to break even recovers{unpriced}",
        ))
    return items


def structural_gaps(client: Any, *, start: date, end: date, floors: Floors, database: str) -> list[StructuralGap]:
    """Features below their floor over ``start``..``end`` and in at least 3/4 of its weeks with revenue."""
    weekly: dict[str, list[Decimal]] = {}
    for row in margin.weekly_margin(client, start=start, end=end, level="feature", database=database):
        if row.margin_pct is not None:
            weekly.setdefault(row.key, []).append(row.margin_pct)
    gaps = []
    for row in margin.margin_by(client, "feature", start=start, end=end, database=database):
        floor = floors.floor(row.key)
        weeks = weekly.get(row.key, [])
        below = sum(pct < floor.floor_pct for pct in weeks)
        if row.margin_pct is None or row.margin_pct >= floor.floor_pct or len(weeks) < 2:
            continue
        if below < math.ceil(STRUCTURAL_SHARE * len(weeks)):
            continue
        with localcontext() as context:
            context.prec = 80
            gap = (row.revenue_usd * floor.floor_pct / 100 - row.margin_usd).quantize(_SCALE, rounding=ROUND_HALF_EVEN)
        gaps.append(StructuralGap(row.key, floor, floors.exception(row.key, end), len(weeks), below,
                                  row.revenue_usd, row.margin_usd, row.margin_pct, gap, row.unpriced_calls))
    return sorted(gaps, key=lambda gap: (-gap.gap_usd, gap.feature))


def floor_items(gaps: Sequence[StructuralGap], days: int) -> list[BacklogItem]:
    """(d) features structurally under their floor, one item per feature."""
    items = []
    for gap in gaps:
        covered = (f"; strategic exception ({gap.exception.owner}, review {gap.exception.review_date}): "
                   "below floor on purpose" if gap.exception else "")
        items.append(BacklogItem(
            "feature below floor", gap.feature, gap.gap_usd, per_quarter(gap.gap_usd, days),
            f"margin {_pct(gap.margin_pct)} against a floor of {_pct(gap.floor.floor_pct)} ({gap.floor.source}), "
            f"below it in {gap.weeks_below} of {gap.weeks_with_revenue} week(s) with revenue; "
            f"revenue {_usd(gap.revenue_usd)} × floor − margin {_usd(gap.margin_usd)}{covered}",
        ))
    return items

