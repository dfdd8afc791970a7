"""The alert rules as Grafana provisioning: generated from the SQL files, and runnable as generated.

Grafana's ClickHouse plugin binds no parameters, so the generator inlines them as literals;
these tests run the generated SQL in the real engine (chDB) to show it still means the rule.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis.alerts import grafana

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "deploy" / "grafana" / "provisioning" / "alerting" / "margin-rules.yaml"

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
    sql = grafana.inline_parameters(f"SELECT {{v:{type_name}}} AS v", {"v": value})
    got = chdb_client.query(sql).result_rows[0][0]
    assert got == value


def test_maps_dates_and_arrays_inline_with_their_types(chdb_client: Any) -> None:
    sql = grafana.inline_parameters(
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
        grafana.inline_parameters("SELECT {ratio:Float64}", {})


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


def test_the_shipped_provisioning_is_generated_from_the_rule_files(chdb_client: Any, database: str) -> None:
    """The file in deploy/ is what the generator makes now, and every query in it runs."""
    from otel_margin.analysis.alerts.thresholds import parameters
    from otel_margin.policy import Policy

    rules = grafana.builtin_rules()
    assert rules, "no built-in rule files found"
    expected = grafana.render(rules, parameters(Policy(), now=datetime.now(timezone.utc)))
    assert SHIPPED.read_text() == expected, (
        "deploy/grafana/provisioning/alerting/margin-rules.yaml is stale; regenerate it with "
        "python -m otel_margin.analysis.alerts.grafana > deploy/grafana/provisioning/alerting/margin-rules.yaml"
    )
    document = yaml.safe_load(SHIPPED.read_text())
    generated = document["groups"][0]["rules"]
    assert sorted(rule["uid"] for rule in generated) == sorted(f"otel-margin-{name}"[:40] for name, _ in rules)
    for rule in generated:
        sql = rule["data"][0]["model"]["rawSql"].replace("`otel_margin`.", f"`{database}`.")
        chdb_client.query(sql)  # the schema has every table and column the rule reads
