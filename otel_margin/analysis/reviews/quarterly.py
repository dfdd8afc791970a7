"""The quarterly margin review: the strategic one, for one calendar quarter.

1. floors against the quarter's data (about 90 days): each feature's margin, floor and headroom;
2. features structurally below their floor, with the dollars missing to reach it;
3. the 12-month cost trend per provider and model (monthly rollup, kept forever);
4. the P&L impact of the guardrails (cache, routing, limits) over the quarter;
5. the self-hosting crossover per model class (the method's rule of thumb: above $15-25K a month
   on one model class, model self-hosting).
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from otel_margin.analysis import margin
from otel_margin.analysis.reviews import backlog, data
from otel_margin.analysis.reviews.figures import pct, points, usd
from otel_margin.analysis.reviews.periods import ReviewPeriod
from otel_margin.analysis.reviews.render import Chart, Review, Section, Table
from otel_margin.analysis.reviews.settings import ReviewSettings
from otel_margin.analysis.reviews.trends import label_trend
from otel_margin.analysis.zones import Floors, zoned
from otel_margin.policy import Policy

AGENDA = (
    "Floors against the quarter's data",
    "Features structurally below floor",
    "Cost trend per provider and model (12 months)",
    "P&L impact of guardrails",
    "Self-hosting crossover per model class",
)
"""The quarterly review's sections, in order."""
TREND_MONTHS = 12
_NO_MODEL = "(no model reported)"
CROSSOVER_MONTHS = 3
"""Monthly spend per model class is averaged over the quarter's 3 months."""


def quarterly_review(
    client: Any,
    quarter: ReviewPeriod,
    *,
    policy: Policy,
    catalog: Any,
    settings: ReviewSettings,
    database: str,
) -> Review:
    """The review of ``quarter`` from the store behind ``client``."""
    floors = Floors(policy)
    (total,) = margin.margin_by(client, "all", start=quarter.start, end=quarter.end, database=database) or (None,)
    summary = [f"{quarter.start} to {quarter.end} (UTC), {quarter.days} days."]
    if total is None:
        summary.append("No calls and no revenue recorded in this quarter.")
    else:
        summary.append(f"Margin {usd(total.margin_usd)} ({pct(total.margin_pct)}) on revenue {usd(total.revenue_usd)} "
                       f"and cost {usd(total.cost_usd)}; {total.calls} calls"
                       + (f", {total.unpriced_calls} unpriced" if total.unpriced_calls else "") + ".")
    months = data.model_months(client, start=_months_back(quarter.end, TREND_MONTHS), end=quarter.end,
                               database=database)
    return Review(
        title=f"Quarterly margin review {quarter.label}",
        summary=tuple(summary),
        sections=(
            floors_section(client, quarter, policy=policy, database=database),
            structural_section(client, quarter, floors=floors, database=database),
            model_trend_section(months, quarter, settings=settings),
            guardrails_section(client, quarter, revenue=total.revenue_usd if total else Decimal(0), database=database),
            crossover_section(months, quarter, catalog=catalog, settings=settings),
        ),
    )


def floors_section(client: Any, quarter: ReviewPeriod, *, policy: Policy, database: str) -> Section:
    """1. Each feature's quarter margin against its floor, and the weeks it spent below."""
    weekly: dict[str, list[Decimal]] = {}
    for row in margin.weekly_margin(client, start=quarter.start, end=quarter.end, level="feature", database=database):
        if row.margin_pct is not None:
            weekly.setdefault(row.key, []).append(row.margin_pct)
    rows, notes = [], []
    features = zoned(margin.margin_by(client, "feature", start=quarter.start, end=quarter.end, database=database),
                     policy, today=quarter.end)
    for z in features:
        weeks = weekly.get(z.row.key, [])
        headroom = None if z.row.margin_pct is None else z.row.margin_pct - z.floor.floor_pct
        rows.append((z.row.key, usd(z.row.revenue_usd), usd(z.row.margin_usd), pct(z.row.margin_pct),
                     f"{pct(z.floor.floor_pct)} ({z.floor.source})", points(headroom),
                     f"{sum(p < z.floor.floor_pct for p in weeks)} of {len(weeks)}", z.zone or "no revenue"))
        if z.exception is not None:
            notes.append(f"{z.row.key}: strategic exception until {z.exception.review_date} ({z.exception.owner})")
    text = ("A floor that every feature clears by 20 points is not a floor, and one most features miss every "
            "week is a price problem, not an alert problem: revisit them here (floors live in the policy file).",)
    chart = Chart("bar", "Quarter margin % against floor", tuple(z.row.key for z in features), (
        ("margin %", tuple(_float(z.row.margin_pct) for z in features)),
        ("floor", tuple(_float(z.floor.floor_pct) for z in features)),
    ), "margin %") if features else None
    return Section(AGENDA[0], text=text, table=Table(
        ("feature", "revenue", "margin", "margin %", "floor", "headroom", "weeks below floor", "zone"), tuple(rows)),
        notes=tuple(notes), chart=chart)


def structural_section(client: Any, quarter: ReviewPeriod, *, floors: Floors, database: str) -> Section:
    """2. Features below their floor over the quarter and in at least 3 of 4 of its weeks with revenue."""
    gaps = backlog.structural_gaps(client, start=quarter.start, end=quarter.end, floors=floors, database=database)
    text = ("Below the floor over the quarter and in at least 3 of every 4 weeks with revenue. Gap = revenue × "
            "floor % − margin: the margin dollars missing to reach the floor (reprice, cut cost, or take a "
            "strategic exception with an owner and a review date).",)
    rows = tuple((g.feature, pct(g.margin_pct), pct(g.floor.floor_pct), f"{g.weeks_below} of {g.weeks_with_revenue}",
                  usd(g.gap_usd), f"{g.exception.owner} until {g.exception.review_date}" if g.exception else "none")
                 for g in gaps)
    if not rows:
        return Section(AGENDA[1], text=text + ("No feature is structurally below its floor.",))
    return Section(AGENDA[1], text=text, table=Table(
        ("feature", "margin %", "floor", "weeks below", "gap", "strategic exception"), rows))


def model_trend_section(months: list[data.ModelMonth], quarter: ReviewPeriod, *, settings: ReviewSettings) -> Section:
    """3. Monthly cost per provider and model over 12 months, labelled by the trend rule."""
    starts = [_months_back(quarter.end, TREND_MONTHS - i) for i in range(TREND_MONTHS)]
    by_model: dict[tuple[str, str], dict[date, data.ModelMonth]] = {}
    for row in months:
        by_model.setdefault((row.provider, row.model), {})[row.month] = row
    rows, series = [], []
    for (provider, model), seen in sorted(by_model.items()):
        per_request = [seen[m].cost_usd / seen[m].priced_calls if m in seen and seen[m].priced_calls else None
                       for m in starts]
        trend = label_trend(list(enumerate(per_request)), settings.trend_threshold_pct)
        total = sum((r.cost_usd for r in seen.values()), Decimal(0))
        last = seen.get(starts[-1])
        rows.append((provider, model or _NO_MODEL, usd(total), usd(last.cost_usd if last else Decimal(0)),
                     usd(next((v for v in per_request if v is not None), None)),
                     usd(next((v for v in reversed(per_request) if v is not None), None)),
                     "—" if trend.relative_slope_pct is None else f"{trend.relative_slope_pct:+} %", trend.label))
        series.append((f"{provider} {model or _NO_MODEL}", tuple(float(seen[m].cost_usd) if m in seen else None for m in starts)))
    text = (f"From the hourly rollup (kept forever). Trend: least-squares slope of the monthly cost per request "
            f"relative to its mean; beyond ±{settings.trend_threshold_pct} % a month degrading / improving.",)
    labels = tuple(f"{m:%Y-%m}" for m in starts)
    return Section(AGENDA[2], text=text, table=Table(
        ("provider", "model", "12-month cost", f"cost {labels[-1]}", "first cost / call", "last cost / call",
         "slope / month", "trend"), tuple(rows)),
        chart=Chart("line", "Monthly cost per provider and model", labels, tuple(series), "USD") if rows else None)


def guardrails_section(client: Any, quarter: ReviewPeriod, *, revenue: Decimal, database: str) -> Section:
    """4. What the guardrails saved in the quarter, and what that is in margin points."""
    rows = margin.guardrails(client, start=quarter.start, end=quarter.end, database=database)
    if not rows:
        return Section(AGENDA[3], text=("No guardrail reported anything in the quarter (no cache lookups, routed, "
                                        "capped or blocked calls): nothing to credit yet.",))
    saved = sum((r.cache_net_saved_usd + r.route_saved_usd for r in rows), Decimal(0))
    impact = saved * 100 / revenue if revenue else None
    text = (f"Saved {usd(saved)} in the quarter" + (f": {points(impact)} of margin on revenue {usd(revenue)}"
                                                    if impact is not None else " (no revenue to weigh it against)")
            + ". Cache: the original cost of each hit, net of what the cache itself spent on lookups "
            "(embeddings); routing: the cost difference to the model asked for.",)
    table = Table(("feature", "cache hit rate", "cache $ avoided", "cache's own cost", "routed calls",
                   "routing $ saved", "capped", "blocked"), tuple(
        (r.feature, pct(r.hit_rate * 100) if r.hit_rate is not None else "—", usd(r.cache_saved_usd),
         usd(r.cache_cost_usd), str(r.routed_calls), usd(r.route_saved_usd), str(r.capped_calls),
         str(r.blocked_calls)) for r in rows))
    return Section(AGENDA[3], text=text, table=table, notes=tuple(
        f"{r.feature}: {r.cache_hint}" for r in rows if r.cache_hint))


def crossover_section(months: list[data.ModelMonth], quarter: ReviewPeriod, *, catalog: Any,
                      settings: ReviewSettings) -> Section:
    """5. Monthly spend per model class over the quarter against the self-hosting threshold."""
    recent = set(_months_back(quarter.end, CROSSOVER_MONTHS - i) for i in range(CROSSOVER_MONTHS))
    classes: dict[str, list[Decimal | int]] = {}
    for row in months:
        if row.month not in recent:
            continue
        if not row.cost_usd and not row.input_tokens + row.output_tokens:
            continue  # failed calls without usage: no spend, no class
        resolved = catalog.lookup(row.provider, row.model) if row.model else None
        name = f"{row.provider} {resolved.priced_as if resolved is not None else row.model or _NO_MODEL}"
        spend = classes.setdefault(name, [Decimal(0), 0])
        spend[0] += row.cost_usd
        spend[1] += row.input_tokens + row.output_tokens
    threshold = settings.self_hosting_monthly_usd
    rows = []
    for name, (cost, tokens) in sorted(classes.items(), key=lambda item: (-item[1][0], item[0])):
        with localcontext() as context:
            context.prec = 60
            monthly = (Decimal(cost) / CROSSOVER_MONTHS).quantize(Decimal(1).scaleb(-12), rounding=ROUND_HALF_EVEN)
        verdict = ("above the threshold: model self-hosting (GPUs, utilisation, operations) against "
                   f"{usd(monthly)} a month" if monthly >= threshold else "below the threshold: stay on the API")
        rows.append((name, usd(monthly), f"{int(tokens) // CROSSOVER_MONTHS:,}", pct(monthly * 100 / threshold),
                     verdict))
    text = (f"Average monthly spend over the quarter's {CROSSOVER_MONTHS} months per model class (the catalog's "
            f"model family, per provider). The method's rule of thumb: above $15-25K a month on one model class, "
            f"model self-hosting; the threshold here is {usd(threshold)} (`[reviews] self_hosting_monthly_usd`). "
            "Self-hosting pays only if GPUs and operations serving those tokens cost less than the monthly spend.",)
    return Section(AGENDA[4], text=text, table=Table(
        ("model class", "spend / month", "tokens / month", "of threshold", "verdict"), tuple(rows)))


def _months_back(end: date, count: int) -> date:
    """The first day of the month ``count - 1`` months before ``end``'s month."""
    index = end.year * 12 + end.month - 1 - (count - 1)
    return date(index // 12, index % 12 + 1, 1)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)

