"""The fleet path: the collector's otel_traces rows become llm_calls rows through our view.

The collector's own DDL (collector/otel_traces_table.sql) is created in chDB and rows are
inserted the way its clickhouse exporter writes them: every attribute a string in a Map.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from otel_margin import attributes, schema
from otel_margin.cli.schema import render_script

REPO = Path(__file__).resolve().parent.parent
COLLECTOR = REPO / "collector"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)

LLM = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": "1200",
    "gen_ai.usage.output_tokens": "300", "gen_ai.usage.cache_read.input_tokens": "1000",
    "gen_ai.usage.cache_creation.input_tokens": "0", "gen_ai.usage.reasoning.output_tokens": "0",
    "gen_ai.request.stream": "true", "margin.feature": "search", "margin.customer": "acme",
    "margin.tier": "pro", "margin.cohort": "2024-Q1", "margin.cost.usd": "0.000255",
    "margin.cost.input.usd": "0.00003", "margin.cost.cache_read.usd": "0.000075",
    "margin.cost.cache_write.usd": "0", "margin.cost.output.usd": "0.00018", "margin.cost.status": "priced",
    "margin.price.version": "genai-prices 0.2.3", "margin.revenue.usd": "0.01", "margin.cache.result": "miss",
}


@pytest.fixture
def traces(chdb_client, database):
    """The collector's otel_traces in its own database, with our view reading it."""
    traces_database = f"otel_{uuid.uuid4().hex[:8]}"
    ddl = (COLLECTOR / "otel_traces_table.sql").read_text()
    chdb_client.command(f"CREATE DATABASE {schema.quote_identifier(traces_database)}")
    chdb_client.command(ddl.replace("otel.otel_traces", f"{schema.quote_identifier(traces_database)}.otel_traces"))
    for statement in schema.collector_statements(database=database, traces_database=traces_database):
        chdb_client.command(statement)
    yield traces_database
    chdb_client.command(f"DROP DATABASE {schema.quote_identifier(traces_database)}")


def write_spans(client, traces_database, spans):
    columns = ["Timestamp", "TraceId", "SpanId", "SpanName", "SpanKind", "ServiceName", "SpanAttributes",
               "Duration", "StatusCode"]
    rows = [[T0, uuid.uuid4().hex, uuid.uuid4().hex[:16], name, "Client", "checkout", attrs, 1_500_000_000, status]
            for name, attrs, status in spans]
    client.insert(f"{schema.quote_identifier(traces_database)}.otel_traces", rows, column_names=columns)


def test_llm_spans_become_margin_rows_and_others_are_ignored(chdb_client, database, traces):
    write_spans(chdb_client, traces, [
        ("chat gpt-4o-mini", LLM, "Unset"),
        ("GET /health", {"http.request.method": "GET"}, "Unset"),
        ("invoke_agent planner", {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": "99"}, "Unset"),
        ("chat mystery", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": "abc",
                          "margin.cost.usd": "not money"}, "Error"),
        ("embeddings e", {"gen_ai.operation.name": "embeddings", "margin.cost.usd": "1E-7"}, "Ok"),
    ])
    db = schema.quote_identifier(database)
    rows = chdb_client.query(f"SELECT * FROM {db}.llm_calls ORDER BY operation, request_model DESC").named_results()
    chat, unpriced, embeddings = list(rows)
    assert chat["timestamp"].replace(tzinfo=timezone.utc) == T0 and chat["service_name"] == "checkout" and chat["stream"] is True
    assert (chat["feature"], chat["customer"], chat["tier"], chat["cohort"]) == ("search", "acme", "pro", "2024-Q1")
    assert (chat["input_tokens"], chat["output_tokens"], chat["cache_read_tokens"]) == (1200, 300, 1000)
    assert chat["cost_usd"] == Decimal("0.000255") and chat["cost_output_usd"] == Decimal("0.00018")
    assert chat["revenue_usd"] == Decimal("0.01") and chat["duration_ms"] == 1500.0
    assert (chat["response_model"], chat["cost_status"], chat["error_type"]) == ("gpt-4o-mini-2024-07-18", "priced", "")
    # Unparseable values: never a guessed number; cost NULL (not 0), tokens 0 under the 'invalid' mark.
    assert unpriced["cost_usd"] is None and unpriced["cost_status"] == "invalid" and unpriced["input_tokens"] == 0
    assert (unpriced["feature"], unpriced["error_type"]) == (attributes.UNATTRIBUTED, "_OTHER")
    assert embeddings["cost_usd"] == Decimal("0.0000001")
    # The inserts cascade into the rollups.
    assert chdb_client.query(
        f"SELECT sum(calls), sum(unpriced_calls), sum(cost_usd) FROM {db}.llm_calls_daily"
    ).result_rows == [(3, 1, Decimal("0.0002551"))]


@pytest.mark.parametrize(("changes", "status", "cost", "input_tokens"), [
    ({}, "priced", Decimal("0.000255"), 1200),
    ({"gen_ai.usage.input_tokens": " 1200 "}, "priced", Decimal("0.000255"), 1200),
    ({"gen_ai.usage.input_tokens": "18446744073709551615"}, "priced", Decimal("0.000255"), 2**64 - 1),
    ({"gen_ai.usage.input_tokens": "1000000000000000000000000000000", "margin.cost.usd": "150000000000000000000000"},
     "invalid", None, 0),
    ({"gen_ai.usage.input_tokens": "18446744073709551616"}, "invalid", None, 0),
    ({"gen_ai.usage.output_tokens": "-3"}, "invalid", None, 1200),
    ({"gen_ai.usage.reasoning.output_tokens": "1e30"}, "invalid", None, 1200),
    ({"margin.cost.usd": ""}, "invalid", None, 1200),  # "priced" without a cost
    ({"margin.cost.usd": "", "margin.cost.status": "estimated"}, "invalid", None, 1200),
    ({"margin.cost.usd": "", "margin.cost.status": "unpriced"}, "unpriced", None, 1200),
])
def test_counts_uint64_cannot_hold_are_never_wrapped_nor_zeroed_under_a_price(chdb_client, database, traces,
                                                                              changes, status, cost, input_tokens):
    write_spans(chdb_client, traces, [("chat gpt-4o-mini", {**LLM, **changes}, "Unset")])
    db = schema.quote_identifier(database)
    (row,) = chdb_client.query(f"SELECT * FROM {db}.llm_calls").named_results()
    assert (row["cost_status"], row["cost_usd"], row["input_tokens"]) == (status, cost, input_tokens)
    if status == "invalid" and any("tokens" in key for key in changes):  # no component priced from a bad count
        assert row["cost_input_usd"] == row["cost_output_usd"] == Decimal(0)


def test_a_span_in_a_unit_carries_it_and_one_outside_is_its_own_unit(chdb_client, database, traces):
    write_spans(chdb_client, traces, [
        ("chat in", {**LLM, "margin.unit.id": "ticket-7", "margin.unit.kind": "ticket"}, "Unset"),
        ("chat out", LLM, "Unset"),
    ])
    db = schema.quote_identifier(database)
    rows = chdb_client.query(f"SELECT unit_id, unit_kind, span_id FROM {db}.llm_calls ORDER BY unit_kind DESC")
    (inside, outside) = rows.result_rows
    assert inside[:2] == ("ticket-7", "ticket")
    assert outside == (outside[2], "", outside[2]) and outside[2]


def test_the_view_reads_only_attribute_names_defined_in_attributes_module():
    text = schema.collector_statements()[0]
    used = set(re.findall(r"SpanAttributes\['([^']+)'\]", text))
    defined = {value for name, value in vars(attributes).items() if name.isupper() and isinstance(value, str)}
    assert used and used <= defined, used - defined


def test_generated_copy_in_collector_dir_is_current():
    for name, statement in zip(schema.COLLECTOR_FILES, schema.collector_statements(), strict=True):
        text = (COLLECTOR / name.split("/")[-1]).read_text()
        assert text.split("\n", 2)[2] == render_script([statement]), name


def test_collector_config_has_persistent_queue_retry_and_batch():
    config = yaml.safe_load((COLLECTOR / "otel-collector.yaml").read_text())
    exporter = config["exporters"]["clickhouse"]
    assert exporter["sending_queue"]["enabled"] and exporter["sending_queue"]["storage"] == "file_storage/queue"
    assert exporter["retry_on_failure"]["enabled"]
    assert (exporter["database"], exporter["traces_table_name"]) == ("otel", "otel_traces")
    assert "file_storage/queue" in config["extensions"] and "file_storage/queue" in config["service"]["extensions"]
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and "batch" in pipeline["processors"] and pipeline["exporters"] == ["clickhouse"]


def test_deploy_files_are_generated_from_the_same_sql():
    deploy = REPO / "deploy" / "clickhouse"
    cluster = (deploy / "cluster-schema.sql").read_text().split("\n", 2)[2]
    assert cluster == render_script(schema.statements(cluster="margin") + schema.collector_statements(cluster="margin"))
    single = (deploy / "02-margin-schema.sql").read_text().split("\n", 2)[2]
    assert single == render_script(schema.statements() + schema.collector_statements())


def test_deploy_otel_traces_ddl_is_the_collector_one():
    """The compose init script creates the collector's database, then the same table DDL."""
    ddl = (COLLECTOR / "otel_traces_table.sql").read_text().rstrip("\n")
    deploy = (REPO / "deploy" / "clickhouse" / "01-otel-traces.sql").read_text().rstrip("\n")
    assert deploy == f"CREATE DATABASE IF NOT EXISTS otel;\n\n{ddl};"
