"""Outcomes (issue 15 item 2): recorded once per unit, priced by the policy, abandoned after a grace period.

Real SDK calls to the stand-in inside units, outcome spans through the real exporter into
chDB, read back through the ``units`` view; the collector path through ``otel_traces``.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin import attribute, outcome, schema, unit
from otel_margin import attributes as a
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.exporters.record_rows import TABLE_COLUMNS, record_row
from otel_margin.exporters.rows import FORMAT, encode_rows
from otel_margin.standin import openai_client

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from conftest import instrumentation
from test_collector import LLM, traces, write_spans  # noqa: F401 - fixture

MESSAGES = [{"role": "user", "content": "Resolve the ticket."}]
POLICY = '[features.support]\n[features.support.outcome_prices]\nresolved = "2.00"\nescalated = "0.50"\n'
UNITS = "SELECT {cols} FROM {db}.units(start = '2000-01-01', end = '2100-01-01', grace_minutes = {grace}) ORDER BY unit_id"


def _store(spans: list[Any], tmp_path: Any) -> Any:
    """The spans into a fresh chDB through the real exporter; a client reading it."""
    path = str(tmp_path / "chdb")
    exporter = ClickHouseSpanExporter(endpoint=f"chdb://{path}", spool_dir=str(tmp_path / "spool"), drain_interval=0.1)
    exporter.export(spans)
    exporter.shutdown()
    return clickhouse_connect.get_client(interface="chdb", path=path)


@pytest.fixture
def priced(otel, tmp_path, monkeypatch):
    """Instrumented with a policy that prices the support feature per outcome."""
    policy = tmp_path / "otel-margin.toml"
    policy.write_text(POLICY)
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    otel.clear()
    with instrumentation(otel):
        yield otel


def test_tickets_earn_their_outcome_price_once_and_a_failed_one_earns_nothing(standin_server, priced, tmp_path):
    client = openai_client(standin_server)
    with attribute(feature="support", customer="acme"):
        for ticket, status in (("T-1", "resolved"), ("T-2", "failed"), ("T-3", "escalated")):
            with unit("ticket", id=ticket):
                for _ in range(3):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                outcome(status)
        outcome("resolved", unit="T-2")  # a retry: recorded again, it replaces the failed one
        outcome("failed", unit="T-2")
    spans = priced.spans()
    calls = [s for s in spans if a.GEN_AI_OPERATION_NAME in s.attributes]
    assert len(calls) == 9
    expected_cost: dict[str, Decimal] = Counter()
    for span in calls:
        expected_cost[span.attributes[a.MARGIN_UNIT_ID]] += Decimal(span.attributes[a.MARGIN_COST_USD])
    reader = _store(spans, tmp_path)
    try:
        rows = reader.query(UNITS.format(cols="unit_id, unit_kind, feature, customer, calls, outcome, revenue_usd, "
                                              "inference_usd, cost_usd", db="otel_margin", grace=0)).result_rows
        assert reader.query("SELECT count() FROM otel_margin.outcomes FINAL").result_rows == [(3,)]
    finally:
        reader.close()
    assert [row[:6] for row in rows] == [
        ("T-1", "ticket", "support", "acme", 3, "resolved"),
        ("T-2", "ticket", "support", "acme", 3, "failed"),
        ("T-3", "ticket", "support", "acme", 3, "escalated"),
    ]
    assert [row[6] for row in rows] == [Decimal("2.00"), Decimal(0), Decimal("0.50")]
    for row in rows:
        assert row[7] == row[8] == expected_cost[row[0]] > 0


def test_an_explicit_revenue_wins_and_outside_a_unit_outcome_says_how_to_fix_it(priced):
    with attribute(feature="support"), unit("ticket", id="T-9"):
        outcome("resolved", revenue_usd="3.25", quality="0.9")
    (span,) = [s for s in priced.spans() if a.MARGIN_OUTCOME_STATUS in s.attributes]
    assert span.attributes[a.MARGIN_OUTCOME_REVENUE_USD] == "3.25"
    assert span.attributes[a.MARGIN_OUTCOME_QUALITY] == "0.9"
    assert span.attributes[a.MARGIN_UNIT_ID] == "T-9" and a.GEN_AI_OPERATION_NAME not in span.attributes
    with pytest.raises(ValueError, match="inside `with unit"):
        outcome("resolved")
    with pytest.raises(ValueError, match=r"outcome\(revenue_usd='ten'\)"):
        outcome("resolved", revenue_usd="ten", unit="T-9")
    with pytest.raises(ValueError, match="status"):
        outcome("", unit="T-9")


def test_a_unit_with_calls_and_no_outcome_is_abandoned_after_the_grace_period(standin_server, priced, tmp_path):
    client = openai_client(standin_server)
    with attribute(feature="support"), unit("ticket", id="T-open"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    reader = _store(priced.spans(), tmp_path)
    try:
        now = reader.query(UNITS.format(cols="outcome, revenue_usd", db="otel_margin", grace=0)).result_rows
        later = reader.query(UNITS.format(cols="outcome", db="otel_margin", grace=10**6)).result_rows
    finally:
        reader.close()
    assert now == [("abandoned", None)] and later == [("open",)]


def _span(attrs: dict[str, Any], span_id: int, start_ns: int) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    context = SpanContext(trace_id=1, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(name="margin.outcome", context=context, attributes=attrs, start_time=start_ns,
                        end_time=start_ns)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recordings=st.lists(st.tuples(st.sampled_from(["resolved", "failed", "escalated", "abandoned"]),
                                     st.decimals(min_value=0, max_value=1000, places=2)),
                           min_size=1, max_size=6))
def test_an_outcome_recorded_any_number_of_times_is_counted_once_the_last_one_wins(chdb_client, database, recordings):
    db = schema.quote_identifier(database)
    chdb_client.command(f"TRUNCATE TABLE {db}.outcomes")
    problems: Counter[str] = Counter()
    rows = []
    for i, (status, revenue) in enumerate(recordings):
        attrs = {a.MARGIN_UNIT_ID: "U-1", a.MARGIN_UNIT_KIND: "ticket", a.MARGIN_FEATURE: "support",
                 a.MARGIN_OUTCOME_STATUS: status, a.MARGIN_OUTCOME_REVENUE_USD: format(revenue, "f")}
        table, row = record_row(_span(attrs, i + 1, 1_700_000_000_000_000_000 + i * 1000), service_name="s",
                                problems=problems)
        rows.append(row)
        # Each recording is its own export batch (a retry is a later one).
        block = encode_rows([row], problems, columns=TABLE_COLUMNS[table])
        chdb_client.raw_insert(f"{db}.{table}", column_names=list(block.columns), insert_block=block.body, fmt=FORMAT)
    result = chdb_client.query(UNITS.format(cols="count(), any(outcome), sum(revenue_usd)", db=db, grace=0)
                               .replace(" ORDER BY unit_id", "")).result_rows
    last_status, last_revenue = recordings[-1]
    assert result == [(1, last_status, last_revenue)]
    assert not problems


def test_the_collector_view_turns_an_outcome_span_into_an_outcomes_row(chdb_client, database, traces):
    write_spans(chdb_client, traces, [
        ("chat gpt-4o-mini", {**LLM, "margin.unit.id": "T-5", "margin.unit.kind": "ticket"}, "Unset"),
        ("margin.outcome resolved", {"margin.unit.id": "T-5", "margin.unit.kind": "ticket", "margin.feature": "search",
                                     "margin.outcome.status": "resolved", "margin.outcome.revenue.usd": "2.00"}, "Unset"),
    ])
    db = schema.quote_identifier(database)
    assert chdb_client.query(f"SELECT unit_id, unit_kind, feature, status, revenue_usd FROM {db}.outcomes").result_rows == [
        ("T-5", "ticket", "search", "resolved", Decimal("2.00"))]
    assert chdb_client.query(f"SELECT count() FROM {db}.llm_calls").result_rows == [(1,)]  # not a call
    (row,) = chdb_client.query(UNITS.format(cols="calls, outcome, revenue_usd, cost_usd", db=db, grace=0)).result_rows
    assert row == (1, "resolved", Decimal("2.00"), Decimal("0.000255"))


def test_a_bad_outcome_price_is_refused_with_its_line():
    from otel_margin.policy import PolicyError, parse_policy

    policy = parse_policy(POLICY)
    assert policy.features["support"].outcome_prices == {"resolved": Decimal("2.00"), "escalated": Decimal("0.50")}
    with pytest.raises(PolicyError, match="line 3") as raised:
        parse_policy('[features.support]\n[features.support.outcome_prices]\nresolved = "two"\n')
    assert "resolved" in str(raised.value)
