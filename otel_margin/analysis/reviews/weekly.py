"""The weekly margin review: the method's fixed agenda, for one ISO week.

1. zones per feature and what changed since the week before;
2. the week's alerts and whether they were acted on (from ``alert_events``, once alerts run);
3. the 4-week cost trend per feature (stable / improving / degrading, :mod:`.trends`);
4. upcoming changes (model prices, expiring strategic exceptions, :mod:`.upcoming`);
5. the margin improvement backlog, ranked by estimated dollars per quarter (:mod:`.backlog`).

Each section says when its source is not there yet instead of showing an empty one.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from otel_margin.analysis import margin
from otel_margin.analysis.reviews import backlog, data, upcoming
from otel_margin.analysis.reviews.figures import pct, points, usd
from otel_margin.analysis.reviews.periods import ReviewPeriod, week_of
from otel_margin.analysis.reviews.render import Chart, Review, Section, Table
from otel_margin.analysis.reviews.settings import ReviewSettings
from otel_margin.analysis.reviews.trends import label_trend
from otel_margin.analysis.zones import Floors, zoned
from otel_margin.policy import Policy

AGENDA = (
    "Zones per feature and what changed",
    "Last week's alerts and whether they were acted on",
    "Cost trend per feature (4 weeks)",
    "Upcoming changes",
    "Margin improvement backlog",
)
"""The weekly review's sections, in order (the method's fixed agenda)."""
TREND_WEEKS = 4
ALERTS_PER_WEEK = 3
"""The method: a rule that fires more than 3 times a week has wrong thresholds."""
_ZONE_ORDER = {"red": 0, "yellow": 1, "green": 2, None: 3}


def weekly_review(
    client: Any,
    week: ReviewPeriod,
    *,
    policy: Policy,
    catalog: Any,
    settings: ReviewSettings,
    database: str,
) -> Review:
    """The review of ``week`` from the store behind ``client``."""
    window_start = week.start - timedelta(weeks=TREND_WEEKS - 1)
    floors = Floors(policy)
    (total,) = margin.margin_by(client, "all", start=week.start, end=week.end, database=database) or (None,)
    summary = [f"{week.start} to {week.end} (UTC). Backlog and trends over the {TREND_WEEKS} weeks "
               f"{window_start} to {week.end}."]
    if total is None:
        summary.append("No calls and no revenue recorded in this week.")
    else:
        summary.append(f"Margin {usd(total.margin_usd)} ({pct(total.margin_pct)}) on revenue "
                       f"{usd(total.revenue_usd)} and cost {usd(total.cost_usd)}; {total.calls} calls"
                       + (f", {total.unpriced_calls} unpriced (not in the cost: margins are upper bounds)"
                          if total.unpriced_calls else "") + ".")
    return Review(
        title=f"Weekly margin review {week.label}",
        summary=tuple(summary),
        sections=(
            zones_section(client, week, policy=policy, database=database),
            alerts_section(client, week, database=database),
            trend_section(client, week, settings=settings, database=database),
            upcoming_section(client, week, floors=floors, catalog=catalog, database=database),
            backlog_section(client, window_start, week.end, floors=floors, catalog=catalog, settings=settings,
                            database=database),
        ),
    )


def zones_section(client: Any, week: ReviewPeriod, *, policy: Policy, database: str) -> Section:
    """1. Each feature's zone this week against the week before."""
    before = week_of(week.start - timedelta(days=1))
    this = zoned(margin.margin_by(client, "feature", start=week.start, end=week.end, database=database),
                 policy, today=week.end)
    last = {z.row.key: z for z in zoned(
        margin.margin_by(client, "feature", start=before.start, end=before.end, database=database),
        policy, today=before.end)}
    this.sort(key=lambda z: (_ZONE_ORDER[z.zone], z.row.margin_usd, z.row.key))
    rows, notes = [], []
    for z in this:
        previous = last.get(z.row.key)
        rows.append((z.row.key, usd(z.row.revenue_usd), usd(z.row.cost_usd), usd(z.row.margin_usd),
                     pct(z.row.margin_pct), f"{pct(z.floor.floor_pct)} ({z.floor.source})", z.zone or "no revenue",
                     (previous.zone or "no revenue") if previous else "no calls", _change(z, previous)))
        if z.exception is not None:
            notes.append(f"{z.row.key}: strategic exception until {z.exception.review_date} "
                         f"({z.exception.owner}: {z.exception.reason})")
        if z.row.unpriced_calls:
            notes.append(f"{z.row.key}: {z.row.unpriced_calls} unpriced call(s) this week: its margin is an upper bound")
    for key in sorted(set(last) - {z.row.key for z in this}):
        notes.append(f"{key}: calls the week before ({last[key].zone or 'no revenue'}), none this week")
    chart = Chart("bar", "Margin % per feature", tuple(z.row.key for z in this), (
        (before.label, tuple(_float(last[z.row.key].row.margin_pct) if z.row.key in last else None for z in this)),
        (week.label, tuple(_float(z.row.margin_pct) for z in this)),
        ("floor", tuple(_float(z.floor.floor_pct) for z in this)),
    ), "margin %")
    return Section(AGENDA[0], table=Table(
        ("feature", "revenue", "cost", "margin", "margin %", "floor", "zone", f"zone {before.label}", "change"),
        tuple(rows)), notes=tuple(notes), chart=chart if rows else None)


def alerts_section(client: Any, week: ReviewPeriod, *, database: str) -> Section:
    """2. The week's alerts, and whether each breach has cleared since."""
    alerts = data.fired_alerts(client, start=week.start, end=week.end, database=database)
    if alerts is None:
        return Section(AGENDA[1], text=(
            "Not available yet: this database has no alert history (no `alert_events` table). It fills in "
            "once the margin alert rules are evaluated against this store.",))
    if not alerts:
        return Section(AGENDA[1], text=("No alerts fired in the week.",))
    rows = tuple(
        (f"{alert.fired_at:%Y-%m-%d %H:%M}", alert.rule, alert.severity, alert.feature, alert.customer,
         _number(alert.value), _number(alert.threshold), alert.driver,
         alert.outcome,
         f"{alert.delivered_to} of {alert.due_to}")
        for alert in alerts)
    counts = Counter(alert.rule for alert in alerts)
    notes = tuple(f"{rule} fired {count} times: more than {ALERTS_PER_WEEK} a week means its thresholds are "
                  "wrong (the method); tune them in the policy file" for rule, count in sorted(counts.items())
                  if count > ALERTS_PER_WEEK)
    return Section(AGENDA[1], text=(
        "Acted on: otel-margin sees whether a breach cleared, still stands, or fired again (a newer alert "
        "for the same rule, feature and customer); record what was done beside each.",), table=Table(
        ("fired (UTC)", "rule", "severity", "feature", "customer", "value", "threshold", "driver", "acted on",
         "delivered"), rows), notes=notes)


def trend_section(client: Any, week: ReviewPeriod, *, settings: ReviewSettings, database: str) -> Section:
    """3. Cost per request of each feature over 4 weeks, labelled by the least-squares rule."""
    mondays = [week.start - timedelta(weeks=TREND_WEEKS - 1 - i) for i in range(TREND_WEEKS)]
    by_feature: dict[str, dict[date, data.PeriodCost]] = {}
    for row in data.feature_weeks(client, start=mondays[0], end=week.end, database=database):
        by_feature.setdefault(row.key, {})[row.period] = row
    rows, series = [], []
    for feature, weeks in sorted(by_feature.items()):
        per_request = [weeks[m].cost_per_request if m in weeks else None for m in mondays]
        trend = label_trend(list(enumerate(per_request)), settings.trend_threshold_pct)
        rows.append((feature, *(usd(v) for v in per_request),
                     "—" if trend.relative_slope_pct is None else f"{trend.relative_slope_pct:+} %", trend.label))
        series.append((feature, tuple(_float(v) for v in per_request)))
    labels = tuple(f"{m.isocalendar()[0]}-W{m.isocalendar()[1]:02d}" for m in mondays)
    rule = (f"Average cost of a priced call per week. Label: least-squares slope of the weekly cost per request, "
            f"relative to its mean; above +{settings.trend_threshold_pct} % a week degrading, below "
            f"-{settings.trend_threshold_pct} % improving, else stable (weeks without priced calls left out; "
            "fewer than 2 such weeks: not enough data).")
    return Section(AGENDA[2], text=(rule,), table=Table(("feature", *labels, "slope / week", "trend"), tuple(rows)),
                   chart=Chart("line", "Cost per request", labels, tuple(series), "USD per call") if rows else None)


def upcoming_section(client: Any, week: ReviewPeriod, *, floors: Floors, catalog: Any, database: str) -> Section:
    """4. Price changes of models in use and strategic exceptions expiring soon."""
    models = data.models_in_use(client, start=week.start, end=week.end, database=database)
    changes = upcoming.price_changes(models, catalog, week.end) + upcoming.expiring_exceptions(
        floors.exceptions, week.end)
    text = (f"Model prices (models used this week) and strategic exceptions, up to {upcoming.HORIZON_DAYS} days "
            "ahead.",)
    if not changes:
        return Section(AGENDA[3], text=text + ("Nothing upcoming.",))
    return Section(AGENDA[3], text=text, table=Table(
        ("change", "subject", "detail"), tuple((c.kind, c.subject, c.detail) for c in changes)))


def backlog_section(
    client: Any, start: date, end: date, *, floors: Floors, catalog: Any, settings: ReviewSettings, database: str
) -> Section:
    """5. The margin improvement backlog, most dollars per quarter first."""
    items = backlog.build_backlog(client, start=start, end=end, floors=floors, catalog=catalog,
                                  small_output_tokens=settings.small_output_tokens, database=database)
    days = (end - start).days + 1
    text = (f"Estimated from the {days} days {start} to {end}, scaled to a quarter (× {backlog.QUARTER_DAYS} / "
            f"{days}). Estimates overlap (a cached repeat also lifts its feature toward the floor): rank by "
            "them, do not add them up. Each method is beside its figure (docs/reviews.md).",)
    if not items:
        return Section(AGENDA[4], text=text + ("Nothing to recover on these estimates.",))
    rows = tuple((str(rank), item.kind, item.subject, usd(item.quarter_usd), usd(item.window_usd), item.method)
                 for rank, item in enumerate(items, 1))
    top = items[:10]
    chart = Chart("bar", "Backlog: estimated dollars per quarter", tuple(f"{i.kind}: {i.subject}" for i in top),
                  (("USD per quarter", tuple(float(i.quarter_usd) for i in top)),), "USD per quarter")
    return Section(AGENDA[4], text=text, table=Table(
        ("#", "lever", "subject", "per quarter", f"in {days} days", "how estimated"), rows), chart=chart)


def _change(this: Any, previous: Any) -> str:
    if previous is None:
        return "new this week"
    if this.zone != previous.zone:
        return f"{previous.zone or 'no revenue'} → {this.zone or 'no revenue'}"
    if this.row.margin_pct is None or previous.row.margin_pct is None:
        return "unchanged"
    return f"unchanged ({points(this.row.margin_pct - previous.row.margin_pct)})"


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _number(value: float) -> str:
    return f"{value:,.4g}"
