"""The dashboard's data: every view's rows from the warehouse, as one JSON document.

:func:`build` runs the dashboard's queries (``otel_margin/analysis/sql/dashboard_*_query.sql``
and the margin module's cost map and guardrails) in one storage session and returns plain
values: money as exact decimal strings (the page turns them into numbers only to place a point,
and prints the string), dates as ISO strings. The same document feeds the live page (JSON
endpoint) and the snapshot (embedded in the HTML), so both show the same numbers.

Zones come from the policy file's floors and yellow bands (:mod:`otel_margin.analysis.zones`),
subscription revenue is allocated by its rule (:mod:`otel_margin.analysis.allocation`). A view
whose source is not there yet (the alerts' history before ``otel-margin alerts run`` first ran)
carries ``"missing"``: a sentence saying what is missing and how to get it, printed in place of
the view.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

from otel_margin import schema
from otel_margin.analysis import margin, units
from otel_margin.analysis.allocation import ALLOCATE_BY, DEFAULT_ALLOCATE_BY, allocation
from otel_margin.analysis.queries import query
from otel_margin.analysis.zones import Floors, zone
from otel_margin.policy import Policy

CUSTOMER_POINTS = 200
"""Customers on the scatter at most (those with the most revenue); the page says how many more."""
ALERTS_SHOWN = 50
"""Latest alerts listed, at most."""
CUSTOMER_CHOICES = 500
"""Customers offered by the filter (those with the most calls); any other can be typed in."""
MAX_DAYS = 3660


@dataclass(frozen=True, slots=True)
class Filters:
    """What the page shows: the last ``days`` days up to ``end`` (UTC), and '' = any."""

    days: int = 30
    feature: str = ""
    tier: str = ""
    customer: str = ""
    allocate_by: str = DEFAULT_ALLOCATE_BY
    end: date | None = None
    """The last day shown (default: today, UTC)."""

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"period of {self.days} days is out of range; use 1 to {MAX_DAYS} days")
        if self.allocate_by not in ALLOCATE_BY:
            raise ValueError(f"allocate_by {self.allocate_by!r} is not one of {', '.join(ALLOCATE_BY)}")

    def range(self, now: datetime) -> tuple[date, date]:
        end = self.end or now.date()
        return end - timedelta(days=self.days - 1), end


def build(
    client: Any, filters: Filters, *, policy: Policy, database: str = schema.DEFAULT_DATABASE,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every view of the dashboard for ``filters``, as a JSON-ready mapping.

    ``policy`` gives the floors and bands of the zones and the allocation's weights and AI shares.
    """
    now = now or datetime.now(timezone.utc)
    start, end = filters.range(now)
    bound = {"feature": filters.feature, "tier": filters.tier, "customer": filters.customer}
    # The weekly view's 4-week trailing window reaches 3 weeks before the first Monday.
    facts_start = start - timedelta(days=start.weekday() + 21)
    rule = allocation(filters.allocate_by, policy).parameters()
    rows = _rows(client, "dashboard_facts_query", database,
                 {**bound, **rule, "start": facts_start, "end": end, "page_start": start})
    facts = [row for row in rows if row["by"] == "day"]
    in_range = [row for row in facts if row["day"] >= start]
    document = {
        "generated_at": now.isoformat(timespec="seconds"),
        "filters": {**dataclasses.asdict(filters), "start": start, "end": end},
        "options": _options(client, database, start, end),
        "totals": _totals(in_range),
        "views": {
            "realtime": _realtime(client, database, filters, now),
            "daily": _daily(in_range, Floors(policy), end),
            "weekly": {"tier": _weekly(facts, "tier", start), "cohort": _weekly(facts, "cohort", start)},
            "monthly": _monthly(in_range),
            "customers": _customers([row for row in rows if row["by"] == "customer" and row["page"]]),
            "cost_map": _cost_map(client, database, filters, start, end),
            "waterfall": _waterfall(in_range),
            "guardrails": _guardrails(client, database, filters, start, end),
            "alerts": _alerts(client, database, filters, start, end),
        },
    }
    return plain(document)


def empty(filters: Filters, note: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The document of a store nothing was exported to yet: every view empty, ``note`` says why."""
    now = now or datetime.now(timezone.utc)
    start, end = filters.range(now)
    return plain({
        "generated_at": now.isoformat(timespec="seconds"),
        "filters": {**dataclasses.asdict(filters), "start": start, "end": end},
        "options": {"feature": [], "tier": [], "customer": []},
        "totals": _totals([]),
        "no_data": note,
        "views": {},
    })


def has_calls(client: Any, database: str) -> bool:
    """Some exporter (or ``otel-margin schema apply``) has created the calls table in ``database``."""
    return _has_table(client, database, "llm_calls")


def _has_table(client: Any, database: str, table: str) -> bool:
    return bool(client.query(
        "SELECT count() FROM system.tables WHERE database = {database:String} AND name = {table:String}",
        parameters={"database": database, "table": table},
    ).result_rows[0][0])


def to_json(document: dict[str, Any]) -> str:
    """The document as JSON text (already plain: Decimals and dates are strings)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def plain(value: Any) -> Any:
    """``value`` with Decimals as exact strings and dates as ISO strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity (an alert rule's value may be one)
    return value


# --- the views ----------------------------------------------------------------------------------


def _options(client: Any, database: str, start: date, end: date) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {"feature": [], "tier": [], "customer": []}
    for row in _rows(client, "dashboard_options_query", database,
                     {"start": start, "end": end, "limit": CUSTOMER_CHOICES}):
        options[row["kind"]].append(row["value"])
    return options


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole range: money, and the shares that make a margin less than certain."""
    total = _sum(rows)
    unattributed = sum(row["calls"] for row in rows if row["feature"] == "unattributed")
    return {
        **total,
        "unattributed_calls": unattributed,
        "unpriced_share": _share(total["unpriced_calls"], total["calls"]),
        "unattributed_share": _share(unattributed, total["calls"]),
        "anonymous_share": _share(total["anonymous_calls"], total["calls"]),
    }


def _realtime(client: Any, database: str, filters: Filters, now: datetime) -> dict[str, Any]:
    since = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    name = "dashboard_realtime_customer_query" if filters.customer else "dashboard_realtime_query"
    rows = _rows(client, name, database,
                 {"since": since, "feature": filters.feature, "tier": filters.tier, "customer": filters.customer})
    series: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        line = series.setdefault(row["feature"], defaultdict(list))
        line["hour"].append(row["hour"].replace(tzinfo=timezone.utc))
        line["calls"].append(row["calls"])
        line["unpriced_calls"].append(row["unpriced_calls"])
        line["cost_per_request"].append(_ratio(row["cost_usd"], row["priced_calls"]))
        line["revenue_per_request"].append(_ratio(row["revenue_usd"], row["calls"]))
    return {"since": since.replace(tzinfo=timezone.utc),
            "series": [{"feature": feature, **line} for feature, line in series.items()]}


def _daily(rows: list[dict[str, Any]], floors: Floors, today: date) -> dict[str, Any]:
    """Each feature's daily margin, each day in its zone by the feature's floor and band."""
    by_feature: dict[str, dict[date, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_feature[row["feature"]][row["day"]].append(row)
    series = []
    for feature in sorted(by_feature):
        floor = floors.floor(feature)
        exception = floors.exception(feature, today)
        line: dict[str, list[Any]] = defaultdict(list)
        for day in sorted(by_feature[feature]):
            total = _sum(by_feature[feature][day])
            line["day"].append(day)
            for name in ("calls", "unpriced_calls", "margin_usd", "margin_pct"):
                line[name].append(total[name])
            pct = total["margin_pct"]
            line["zone"].append(None if pct is None else zone(pct, floor.floor_pct, floor.band_pts))
        series.append({"feature": feature, "floor_pct": floor.floor_pct, "band_pts": floor.band_pts,
                       "floor_source": floor.source,
                       "exception": None if exception is None else
                       f"strategic exception until {exception.review_date} ({exception.owner}: {exception.reason})",
                       **line})
    return {"series": series}


def _weekly(rows: list[dict[str, Any]], level: str, start: date) -> dict[str, Any]:
    weeks: dict[str, dict[date, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        weeks[row[level]][row["day"] - timedelta(days=row["day"].weekday())].append(row)
    first = start - timedelta(days=start.weekday())
    series = []
    for key in sorted(weeks):
        totals = {week: _sum(weeks[key][week]) for week in sorted(weeks[key])}
        line: dict[str, list[Any]] = defaultdict(list)
        for week, total in totals.items():
            if week < first:
                continue
            trailing = [totals[w] for w in totals if week - timedelta(days=21) <= w <= week]
            revenue = sum((t["revenue_usd"] for t in trailing), Decimal(0))
            cost = sum((t["cost_usd"] for t in trailing), Decimal(0))
            line["week"].append(week)
            for name in ("calls", "unpriced_calls", "revenue_usd", "cost_usd", "margin_usd", "margin_pct"):
                line[name].append(total[name])
            # As margin.weekly_margin: the average over the weeks with rows, and those weeks pooled.
            line["margin_4w_avg_usd"].append(_divide(revenue - cost, len(trailing)))
            line["margin_4w_pct"].append(margin.margin_pct(revenue, cost))
        if line:
            series.append({"key": key, **line})
    return {"series": series}


def _monthly(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["day"].replace(day=1), row["feature"])].append(row)
    return {"rows": [{"month": month, "feature": feature, **_sum(groups[(month, feature)])}
                     for month, feature in sorted(groups)]}


def _customers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The customers with the most revenue (then calls), each in its tier with the most revenue."""
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_customer[row["customer"]].append(row)
    customers = []
    for customer, parts in by_customer.items():
        total = _sum(parts)
        tier = max(parts, key=lambda part: (part["revenue_usd"], part["calls"], part["tier"]))["tier"]
        customers.append({"customer": customer, "tier": tier, **{name: total[name] for name in _CUSTOMER_FIELDS}})
    customers.sort(key=lambda row: (-row["revenue_usd"], -row["calls"], row["customer"]))
    shown = customers[:CUSTOMER_POINTS]
    plotted = [row for row in shown if row["margin_pct"] is not None]
    return {
        "points": plotted,
        "without_revenue": [row for row in shown if row["margin_pct"] is None],
        "customers_total": len(customers),
        "quadrant": _quadrant(plotted),
    }


_CUSTOMER_FIELDS = ("calls", "unpriced_calls", "revenue_usd", "cost_usd", "margin_usd", "margin_pct")


def _quadrant(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """High revenue, low margin: revenue at or above the median, margin % below the median."""
    if len(points) < 2:
        return None
    return {"revenue_usd": _median([p["revenue_usd"] for p in points]),
            "margin_pct": _median([p["margin_pct"] for p in points])}


def _cost_map(client: Any, database: str, filters: Filters, start: date, end: date) -> dict[str, Any]:
    """Per request (every call) and per unit of work (units with a kind; a call outside any unit
    is in the per-request map only)."""
    rows = margin.cost_map(client, start=start, end=end, feature=filters.feature or None, database=database)
    per_unit = units.cost_per_unit(client, start=start, end=end, feature=filters.feature or None, database=database)
    unfiltered = [name for name in ("tier", "customer") if getattr(filters, name)]
    return {"rows": rows, "units": [row for row in per_unit if row.unit_kind], "unfiltered": unfiltered}


def _waterfall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Revenue by source, less each category of cost of goods, down to the margin (all exact)."""
    total = _sum(rows)
    return {"steps": [{"name": name, "kind": kind, "amount_usd": total[column] if kind != "cost" else -total[column]}
                      for name, kind, column in _WATERFALL_STEPS],
            "margin_usd": total["margin_usd"]}


_WATERFALL_STEPS = (
    ("usage revenue", "revenue", "usage_revenue_usd"),
    ("outcome revenue", "revenue", "outcome_revenue_usd"),
    ("subscription revenue", "revenue", "subscription_revenue_usd"),
    ("inference", "cost", "inference_usd"),
    ("orchestration", "cost", "orchestration_usd"),
    ("infrastructure", "cost", "infrastructure_usd"),
    ("support", "cost", "support_usd"),
)
_MONEY = ("revenue_usd", "cost_usd") + tuple(column for _, _, column in _WATERFALL_STEPS)


def _guardrails(client: Any, database: str, filters: Filters, start: date, end: date) -> dict[str, Any]:
    rows = margin.guardrails(client, start=start, end=end, feature=filters.feature or None,
                             tier=filters.tier or None, customer=filters.customer or None, database=database)
    return {"rows": rows}


def _alerts(client: Any, database: str, filters: Filters, start: date, end: date) -> dict[str, Any]:
    if not _has_table(client, database, "alert_events"):
        return {"missing": "no alerts recorded yet: `otel-margin alerts run` (or `alerts run --watch`) evaluates "
                           "the alert rules and records what fires here."}
    rows = _rows(client, "dashboard_alerts_query", database, {
        "start": start, "end": end, "feature": filters.feature, "customer": filters.customer, "limit": ALERTS_SHOWN})
    for row in rows:
        row["status"] = "standing" if row["closed_at"] is None else "cleared"
    return {"rows": rows, "limit": ALERTS_SHOWN,
            "unfiltered": ["tier"] if filters.tier else []}


# --- sums -----------------------------------------------------------------------------------


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {name: 0 for name in ("calls", "unpriced_calls", "error_calls", "anonymous_calls")}
    total.update({name: Decimal(0) for name in _MONEY})
    for row in rows:
        for name in total:
            total[name] += row[name]
    total["margin_usd"] = total["revenue_usd"] - total["cost_usd"]
    total["margin_pct"] = margin.margin_pct(total["revenue_usd"], total["cost_usd"])
    return total


def _ratio(amount: Decimal, count: int) -> Decimal | None:
    return _divide(amount, count) if count else None


def _divide(amount: Decimal, count: int) -> Decimal:
    """``amount / count`` truncated to the stored 12 places, as ClickHouse's Decimal division does."""
    with localcontext() as context:
        context.prec = 80
        return (amount / count).quantize(_SCALE, rounding=ROUND_DOWN)


_SCALE = Decimal(1).scaleb(-12)


def _share(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / whole).quantize(Decimal("0.0001")) if whole else None


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _rows(client: Any, name: str, database: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.query(query(name, database=database), parameters=parameters).named_results())
