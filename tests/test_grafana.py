"""Grafana at parity: the dashboard and alert rules generated from the SQL files, runnable as generated.

Grafana's ClickHouse plugin binds no parameters, so the generators inline them (literals, or
Grafana's macros and variables); these tests run the generated SQL in the real engine (chDB),
with Grafana's macros replaced as Grafana would, to show it still means what the product computes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis import margin
from otel_margin.analysis.alerts.events import ensure_table
from otel_margin.analysis.grafana import alerts as grafana
from otel_margin.analysis.grafana import DASHBOARD_FILE, dashboard, generate
from otel_margin.analysis.grafana.sql import inline_parameters

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "grafana"
SHIPPED = DEPLOY / "provisioning" / "alerting" / "margin-rules.yaml"

USER_RULE = """
-- a user's rule: the features whose calls in the last day cost more than a threshold
SELECT 'daily_spend' AS rule, 'red' AS severity, feature, '' AS customer,
       toFloat64(sum(cost_usd)) AS value, {limit_usd:Float64} AS threshold, 'up' AS trend,
       concat('spend of ', {who:String}) AS driver
FROM $database.llm_calls
WHERE timestamp >= {now:DateTime64(6)} - INTERVAL 1 DAY AND feature IN {features:Array(String)}
GROUP BY feature
HAVING value > {limit_usd:Float64}
"""


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-10**9, max_value=10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
))
def test_a_literal_reads_back_as_its_value(chdb_client: Any, value: Any) -> None:
    """Every string (quotes, backslashes, newlines, any Unicode) and number survives inlining."""
    type_name = {str: "String", int: "Int64", Decimal: "Decimal(38, 6)", float: "Float64"}[type(value)]
    sql = inline_parameters(f"SELECT {{v:{type_name}}} AS v", {"v": value})
    got = chdb_client.query(sql).result_rows[0][0]
    assert got == value


def test_maps_dates_and_arrays_inline_with_their_types(chdb_client: Any) -> None:
    sql = inline_parameters(
        "SELECT {floors:Map(String, Float64)} AS f, {day:Date} AS d, {names:Array(String)} AS n, {at:DateTime64(6)} AS t, "
        "{exceptions:Array(Tuple(String, String, Date))} AS e",
        {"floors": {"chat": 55.0, "o'neil": 40.5}, "day": date(2026, 12, 7), "names": ["a", "b'c"],
         "at": datetime(2026, 12, 7, 3, 4, 5, 6), "exceptions": [("chat", "ana", date(2027, 1, 31))]},
    )
    row = chdb_client.query(sql).result_rows[0]
    assert row[4] == [("chat", "ana", date(2027, 1, 31))]
    assert row[0] == {"chat": 55.0, "o'neil": 40.5}
    assert row[1] == date(2026, 12, 7)
    assert row[2] == ["a", "b'c"]
    assert row[3] == datetime(2026, 12, 7, 3, 4, 5, 6)


def test_a_parameter_no_setting_provides_is_named() -> None:
    with pytest.raises(KeyError, match=r"\{ratio:Float64\}"):
        inline_parameters("SELECT {ratio:Float64}", {})


def test_a_generated_rule_fires_once_per_breach_row_with_its_labels(chdb_client: Any, database: str) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    insert_calls(chdb_client, database, [
        call(timestamp=now, feature="chat", cost_usd=Decimal("3")),
        call(timestamp=now, feature="chat", cost_usd=Decimal("4")),
        call(timestamp=now, feature="search", cost_usd=Decimal("1")),
        call(timestamp=now, feature="ignored", cost_usd=Decimal("50")),
    ])
    rule = grafana.grafana_rule("daily_spend", USER_RULE, {"limit_usd": 2.0, "who": "o'neil", "features": ["chat", "search"]},
                                database=database)
    query = rule["data"][0]["model"]["rawSql"]
    assert "{" not in query  # every placeholder inlined: Grafana binds none
    result = chdb_client.query(query)
    rows = [dict(zip(result.column_names, row)) for row in result.result_rows]
    assert [(r["feature"], r["severity"], r["driver"], r["breach"]) for r in rows] == [("chat", "red", "spend of o'neil", 1.0)]
    assert rule["condition"] == "B" and rule["data"][0]["datasourceUid"] == grafana.DATASOURCE_UID


def test_the_shipped_files_are_what_the_generator_writes() -> None:
    for path, text in generate().items():
        assert (DEPLOY / path).read_text() == text, (
            f"deploy/grafana/{path} is stale; regenerate with python -m otel_margin.analysis.grafana deploy/grafana"
        )


def test_every_shipped_alert_rule_runs(chdb_client: Any, database: str) -> None:
    """One Grafana rule per rule file, each runnable on the real schema."""
    rules = grafana.builtin_rules()
    assert rules, "no built-in rule files found"
    document = yaml.safe_load(SHIPPED.read_text())
    generated = document["groups"][0]["rules"]
    assert sorted(rule["uid"] for rule in generated) == sorted(f"otel-margin-{name}"[:40] for name, _ in rules)
    for rule in generated:
        sql = rule["data"][0]["model"]["rawSql"].replace("`otel_margin`.", f"`{database}`.")
        chdb_client.query(sql)  # the schema has every table and column the rule reads


def _as_grafana(sql: str, database: str, *, start: datetime, end: datetime, **variables: str) -> str:
    """The panel's SQL after Grafana's interpolation (time macros; ``:sqlstring`` quotes)."""
    sql = sql.replace("`otel_margin`.", f"`{database}`.")
    sql = sql.replace("$__fromTime", f"toDateTime('{start:%Y-%m-%d %H:%M:%S}')").replace(
        "$__toTime", f"toDateTime('{end:%Y-%m-%d %H:%M:%S}')")
    for name in ("allocate_by", *dashboard.VARIABLES):
        value = variables.get(name, "calls" if name == "allocate_by" else "")
        sql = sql.replace(f"${{{name}:sqlstring}}", "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'")
    assert "$" not in sql.replace("$$", ""), sql
    return sql


def _panel(chdb_client: Any, database: str, title: str, **kwargs: Any) -> list[dict[str, Any]]:
    document = json.loads((DEPLOY / DASHBOARD_FILE).read_text())
    [panel] = [p for p in document["panels"] if p["title"] == title]
    result = chdb_client.query(_as_grafana(panel["targets"][0]["rawSql"], database, **kwargs))
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def test_every_dashboard_panel_runs_and_shows_what_the_product_computes(chdb_client: Any, database: str) -> None:
    today = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    start = today - timedelta(days=6)
    insert_calls(chdb_client, database, [
        call(timestamp=today - timedelta(days=day, hours=1), feature=feature, customer=customer,
             cost_usd=Decimal(cost), revenue_usd=Decimal(revenue))
        for day in range(5)
        for feature, customer, cost, revenue in (("chat", "acme", "0.30", "1.00"), ("search", "o'neil", "0.90", "1.00"))
    ])
    ensure_table(chdb_client, database=database)  # the alerts panel reads alert_events
    document = json.loads((DEPLOY / DASHBOARD_FILE).read_text())
    assert len(document["panels"]) == len(dashboard.panels())
    for panel in document["panels"]:
        chdb_client.query(_as_grafana(panel["targets"][0]["rawSql"], database, start=start, end=today))

    zones = {row["feature"]: row for row in _panel(chdb_client, database,
             "Zones per feature (floors and yellow bands from the policy)", start=start, end=today)}
    expected = {row.key: row for row in margin.margin_by(chdb_client, "feature", start=start.date(), end=today.date(),
                                                         database=database)}
    assert set(zones) == set(expected) == {"chat", "search"}
    for feature, row in zones.items():
        assert Decimal(str(row["margin_usd"])) == expected[feature].margin_usd
        assert row["margin_pct"] == pytest.approx(float(expected[feature].margin_pct))
    assert zones["chat"]["zone"] == "green" and zones["search"]["zone"] == "red"  # 70 % and 10 % against the default 55 % floor

    only = _panel(chdb_client, database, "Daily margin % per feature", start=start, end=today, customer="o'neil")
    assert {row["feature"] for row in only} == {"search"} and len(only) == 5
