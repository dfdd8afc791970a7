"""The margin dashboard for Grafana, generated from the read side's SQL files.

Each panel runs one of the queries ``otel-margin dashboard`` runs
(``otel_margin/analysis/sql/``), wrapped in the few lines of SQL that shape it for the panel
(Grafana has no Python to sum the facts), with the dashboard's time range and its ``feature``,
``tier``, ``customer`` and ``allocate_by`` variables in place of the bound parameters. The
policy's floors, yellow bands, value weights and AI shares are fixed at generation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otel_margin.analysis.grafana.sql import Expression, inline_parameters, strip_comments
from otel_margin.analysis.queries import query
from otel_margin.schema import DEFAULT_DATABASE

TITLE = "otel-margin: gross margin"
UID = "otel-margin"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "margin-clickhouse"}
VARIABLES = ("feature", "tier", "customer")

GRAFANA_BINDINGS: Mapping[str, Expression] = {
    "start": Expression("toDate($__fromTime)"),
    "page_start": Expression("toDate($__fromTime)"),
    "end": Expression("toDate($__toTime)"),
    "since": Expression("now() - INTERVAL 24 HOUR"),
    "allocate_by": Expression("${allocate_by:sqlstring}"),
    "limit": Expression("50"),
    **{name: Expression(f"${{{name}:sqlstring}}") for name in VARIABLES},
}
"""What each bound parameter of a dashboard query becomes in Grafana (``:sqlstring`` quotes
and escapes the variable's text)."""

_FACTS = "dashboard_facts_query"
_MARGIN_PCT = "if(revenue = 0, NULL, (revenue - cost) * 100 / revenue)"


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    kind: str
    """Grafana panel type: timeseries, table, xychart, barchart."""
    source: str
    """The read-side query the panel reads (``otel_margin/analysis/sql/<source>.sql``)."""
    shape: str
    """SQL around the source, which it reads as ``src``."""
    time_series: bool = False
    description: str = ""


_ZONE = (
    "multiIf(margin_pct IS NULL, 'no revenue', margin_pct < floor_pct, 'red', "
    "margin_pct < floor_pct + band_pts, 'yellow', 'green')"
)


def _floor_sql() -> str:
    return (
        "if(has({floor_features:Array(String)}, feature), "
        "{floor_pcts:Array(Float64)}[indexOf({floor_features:Array(String)}, feature)], {default_floor_pct:Float64})"
    )


def _band_sql() -> str:
    return (
        "if(has({floor_features:Array(String)}, feature), "
        "{band_pts:Array(Float64)}[indexOf({floor_features:Array(String)}, feature)], {default_band_pts:Float64})"
    )


def panels() -> list[Panel]:
    """The dashboard's panels, in the order of ``otel-margin dashboard``'s views."""
    daily = "FROM src WHERE by = 'day' AND day >= toDate($__fromTime)"
    weekly = (
        "SELECT toDateTime(week) AS time, {level}, toFloat64(" + _MARGIN_PCT + ") AS margin_pct, "
        "toFloat64(sum(revenue - cost) OVER w * 100 / nullIf(sum(revenue) OVER w, 0)) AS margin_4w_pct "
        "FROM (SELECT toMonday(day) AS week, {level}, sum(revenue_usd) AS revenue, sum(cost_usd) AS cost "
        "FROM src WHERE by = 'day' GROUP BY week, {level}) "
        "WHERE week >= toMonday(toDate($__fromTime)) "
        "WINDOW w AS (PARTITION BY {level} ORDER BY week ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) "
        "ORDER BY time"
    )
    return [
        Panel(
            "Real time: cost and revenue per request (last 24 h)", "timeseries", "dashboard_realtime_query",
            "SELECT hour AS time, feature, toFloat64(cost_usd) / nullIf(priced_calls, 0) AS cost_per_request, "
            "toFloat64(revenue_usd) / nullIf(calls, 0) AS revenue_per_request FROM src ORDER BY time",
            time_series=True,
        ),
        Panel(
            "Daily margin % per feature", "timeseries", _FACTS,
            "SELECT toDateTime(day) AS time, feature, toFloat64(" + _MARGIN_PCT + ") AS margin_pct FROM "
            "(SELECT day, feature, sum(revenue_usd) AS revenue, sum(cost_usd) AS cost " + daily
            + " GROUP BY day, feature) ORDER BY time",
            time_series=True,
        ),
        Panel(
            "Zones per feature (floors and yellow bands from the policy)", "table", _FACTS,
            "SELECT feature, calls, revenue, cost, revenue - cost AS margin_usd, toFloat64(" + _MARGIN_PCT
            + ") AS margin_pct, " + _floor_sql() + " AS floor_pct, " + _band_sql() + " AS band_pts, "
            + _ZONE + " AS zone FROM (SELECT feature, sum(calls) AS calls, sum(revenue_usd) AS revenue, "
            "sum(cost_usd) AS cost " + daily + " GROUP BY feature) ORDER BY margin_pct",
        ),
        Panel("Weekly margin % per tier, with the 4-week trailing figure", "timeseries", _FACTS,
              weekly.format(level="tier"), time_series=True),
        Panel("Weekly margin % per cohort, with the 4-week trailing figure", "timeseries", _FACTS,
              weekly.format(level="cohort"), time_series=True),
        Panel(
            "Monthly margin per feature: $ and % beside volume", "table", _FACTS,
            "SELECT month, feature, calls, revenue, cost, revenue - cost AS margin_usd, toFloat64(" + _MARGIN_PCT
            + ") AS margin_pct FROM (SELECT toStartOfMonth(day) AS month, feature, sum(calls) AS calls, "
            "sum(revenue_usd) AS revenue, sum(cost_usd) AS cost " + daily + " GROUP BY month, feature) "
            "ORDER BY month, feature",
        ),
        Panel(
            "Customers: revenue vs margin %", "xychart", _FACTS,
            "SELECT customer, toFloat64(revenue) AS revenue_usd, toFloat64(" + _MARGIN_PCT + ") AS margin_pct "
            "FROM (SELECT customer, sum(revenue_usd) AS revenue, sum(cost_usd) AS cost FROM src "
            "WHERE by = 'customer' AND page = 1 GROUP BY customer) ORDER BY revenue_usd DESC",
            description="High revenue and low margin % (bottom right) are the customers to look at first.",
        ),
        Panel(
            "Margin waterfall", "table", _FACTS,
            "SELECT sum(revenue_usd) AS revenue, sum(inference_usd) AS inference, sum(orchestration_usd) AS orchestration, "
            "sum(infrastructure_usd) AS infrastructure, sum(support_usd) AS support, revenue - sum(cost_usd) AS gross_margin, "
            "toFloat64(if(revenue = 0, NULL, gross_margin * 100 / revenue)) AS gross_margin_pct " + daily,
        ),
        Panel("Cost map per feature (per priced request)", "table", "cost_map_query", "SELECT * FROM src"),
        Panel("Guardrails: what each lever is worth", "table", "guardrails_query", "SELECT * FROM src",
              description="Empty until a guardrail reports (docs/cache.md)."),
        Panel("Recent alerts", "table", "dashboard_alerts_query", "SELECT * FROM src",
              description="From alert_events, which `otel-margin alerts run` creates and fills (docs/alerts.md)."),
        Panel(
            "Unpriced and unattributed shares", "table", _FACTS,
            "SELECT sum(calls) AS all_calls, sum(unpriced_calls) / nullIf(all_calls, 0) * 100 AS unpriced_pct, "
            "sumIf(calls, feature = 'unattributed') / nullIf(all_calls, 0) * 100 AS unattributed_feature_pct, "
            "sum(anonymous_calls) / nullIf(all_calls, 0) * 100 AS no_customer_pct " + daily,
            description="Never hidden: a call without a price or an owner is still a cost.",
        ),
    ]


def panel_sql(panel: Panel, parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE) -> str:
    """The panel's SQL as Grafana runs it."""
    bound = {**parameters, **GRAFANA_BINDINGS}
    source = strip_comments(inline_parameters(query(panel.source, database=database), bound))
    shape = inline_parameters(panel.shape, bound)
    return f"WITH src AS (\n{source}\n)\n{shape}"


def dashboard(parameters: Mapping[str, Any], *, database: str = DEFAULT_DATABASE) -> dict[str, Any]:
    """The Grafana dashboard (JSON model) over ``database``."""
    built = []
    for index, panel in enumerate(panels()):
        built.append({
            "id": index + 1,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": 9, "w": 12, "x": 12 * (index % 2), "y": 9 * (index // 2)},
            "targets": [{
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "format": 0 if panel.time_series else 1,
                "queryType": "timeseries" if panel.time_series else "table",
                "rawSql": panel_sql(panel, parameters, database=database),
            }],
        })
    text = {"type": "textbox", "query": "", "current": {"text": "", "value": ""}}
    return {
        "uid": UID,
        "title": TITLE,
        "description": "Generated by `python -m otel_margin.analysis.grafana` from otel_margin/analysis/sql; do not edit.",
        "schemaVersion": 39,
        "time": {"from": "now-30d", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [
            {"name": "allocate_by", "label": "allocate subscriptions by", "type": "custom",
             "query": "calls,cost,tokens,value", "current": {"text": "calls", "value": "calls"}},
            *({"name": name, "label": f"{name} (empty: all)", **text} for name in VARIABLES),
        ]},
        "panels": built,
    }
