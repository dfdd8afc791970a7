"""Units of work (issue 15 item 1): real SDK calls to the stand-in inside units, rows in real chDB.

Sync, async, nested, decorated, and a unit that crosses a process boundary in a W3C
``baggage`` header; a call outside any unit is its own unit; an ``llm_calls`` table made
before units gets the columns from ``schema apply`` and its old rows read as their own units.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context, propagate

from otel_margin import attributes as a
from otel_margin import schema, unit
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.standin import openai_client
from otel_margin.units import current_unit

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures

MESSAGES = [{"role": "user", "content": "Resolve the ticket."}]


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any) -> None:
    """Both instrumentors on for the module."""


def _ask(client: Any) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def _units_of(spans: list[Any]) -> list[tuple[str | None, str | None]]:
    return [(s.attributes.get(a.MARGIN_UNIT_ID), s.attributes.get(a.MARGIN_UNIT_KIND)) for s in spans]


def _stored(spans: list[Any], tmp_path: Any) -> list[tuple[str, str, str, str]]:
    """The spans written to a fresh chDB by the real exporter: (span_id, unit_id, unit_kind, operation) rows."""
    endpoint = f"chdb://{tmp_path / 'chdb'}"
    exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=str(tmp_path / "spool"), drain_interval=0.1)
    exporter.export(spans)
    exporter.shutdown()
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "chdb"))
    try:
        return list(client.query(
            "SELECT span_id, unit_id, unit_kind, operation FROM otel_margin.llm_calls ORDER BY timestamp"
        ).result_rows)
    finally:
        client.close()


def test_calls_in_a_unit_share_its_id_and_a_call_outside_is_its_own_unit(standin_server, sink, tmp_path):
    client = openai_client(standin_server)
    with unit("ticket", id="T-1001") as ticket:
        _ask(client)
        client.embeddings.create(model="text-embedding-3-small", input="refund policy")
        _ask(client)
    _ask(client)
    assert ticket.id == "T-1001"
    spans = sink.llm_spans()
    assert _units_of(spans) == [("T-1001", "ticket")] * 3 + [(None, None)]

    rows = _stored(spans, tmp_path)
    assert [(unit_id, kind) for _, unit_id, kind, _ in rows[:3]] == [("T-1001", "ticket")] * 3
    assert {operation for *_, operation in rows[:3]} == {"chat", "embeddings"}
    span_id, unit_id, kind, _ = rows[3]
    assert (unit_id, kind) == (span_id, "") and span_id


def test_a_generated_id_is_new_for_each_entry_and_each_decorated_run(standin_server, sink):
    client = openai_client(standin_server)

    @unit("document")
    def analyse() -> str | None:
        _ask(client)
        found = current_unit()
        return found.id if found else None

    first, second = analyse(), analyse()
    with unit("document") as scope:
        _ask(client)
    ids = [unit_id for unit_id, _ in _units_of(sink.llm_spans())]
    assert ids == [first, second, scope.id]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)


def test_nested_units_the_innermost_wins_and_the_outer_comes_back(standin_server, sink):
    client = openai_client(standin_server)
    with unit("agent_run", id="run-1"):
        _ask(client)
        with unit("tool_step", id="step-1"):
            _ask(client)
        _ask(client)
    assert current_unit() is None
    assert _units_of(sink.llm_spans()) == [("run-1", "agent_run"), ("step-1", "tool_step"), ("run-1", "agent_run")]


def test_async_units_keep_concurrent_tasks_apart(standin_server, sink):
    client = openai_client(standin_server, async_=True)

    @unit("ticket")
    async def resolve(n: int) -> str:
        for _ in range(n):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            await asyncio.sleep(0)
        return current_unit().id  # type: ignore[union-attr]

    async def main() -> list[str]:
        async with unit("batch", id="b-1"):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return list(await asyncio.gather(resolve(2), resolve(3)))

    two, three = asyncio.run(main())
    units = _units_of(sink.llm_spans())
    assert units.count(("b-1", "batch")) == 1
    assert units.count((two, "ticket")) == 2 and units.count((three, "ticket")) == 3 and two != three


def test_a_unit_crosses_a_process_boundary_in_the_baggage_header(standin_server, tmp_path):
    headers: dict[str, str] = {}
    with unit("ticket", id="T-42/ü"):
        propagate.inject(headers)  # the application's HTTP client does this on its way out
    assert "baggage" in headers
    downstream = textwrap.dedent("""
        import json, sys
        from opentelemetry import context, propagate
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
        from otel_margin import flush
        from otel_margin.standin import openai_client

        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        OpenAIMarginInstrumentor().instrument(tracer_provider=provider)
        headers, url = json.loads(sys.argv[1]), sys.argv[2]
        token = context.attach(propagate.extract(headers))  # the server framework does this
        openai_client(url).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        context.detach(token)
        flush()
        (span,) = memory.get_finished_spans()
        print(json.dumps([span.attributes.get("margin.unit.id"), span.attributes.get("margin.unit.kind")]))
    """)
    done = subprocess.run([sys.executable, "-c", downstream, json.dumps(headers), standin_server.openai_base_url],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["T-42/ü", "ticket"]


@pytest.mark.parametrize(("kind", "unit_id", "error"), [
    ("", None, ValueError), ("ticket", "", ValueError), ("t" * 257, None, ValueError),
    ("ticket", "x" * 257, ValueError), (3, None, TypeError), ("ticket", 7, TypeError),
])
def test_bad_unit_values_raise_at_the_line_that_passed_them(kind, unit_id, error):
    with pytest.raises(error, match="unit\\("):
        unit(kind, unit_id)


@settings(max_examples=200, deadline=None)
@given(unit_id=st.one_of(st.text(max_size=300), st.integers(), st.none()), kind=st.one_of(st.text(max_size=300), st.none()))
def test_any_upstream_baggage_is_used_as_it_is_or_refused_never_raised(unit_id, kind):
    ctx = context.get_current()
    if unit_id is not None:
        ctx = baggage.set_baggage(a.BAGGAGE_UNIT, unit_id, ctx)
    if kind is not None:
        ctx = baggage.set_baggage(a.BAGGAGE_UNIT_KIND, kind, ctx)
    token = context.attach(ctx)
    try:
        found = current_unit()
    finally:
        context.detach(token)
    usable = isinstance(unit_id, str) and 0 < len(unit_id) <= 256
    assert (found is not None) == usable
    if found is not None:
        assert found.id == unit_id
        assert found.kind == (kind if kind is not None and 0 < len(kind) <= 256 else "")


def test_schema_apply_adds_the_unit_columns_to_a_table_made_before_units(chdb_client, database):
    db = schema.quote_identifier(database)
    chdb_client.command(f"DROP TABLE {db}.llm_calls")
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.llm_calls_hourly_mv")
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.llm_calls_daily_mv")
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.llm_calls_cost_daily_mv")
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.llm_calls_waterfall_daily_mv")  # made after units, too
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.llm_calls_parts_daily_mv")
    chdb_client.command(f"DROP VIEW IF EXISTS {db}.units_daily_calls_mv")
    before_units = "\n".join(line for line in schema.render(
        "llm_calls_table.sql", database=db, on_cluster="", local="", replicated="", ttl="").splitlines()
        if not line.lstrip().startswith("unit_"))
    chdb_client.command(before_units)
    assert "unit_id" not in {row[0] for row in chdb_client.query(f"DESCRIBE TABLE {db}.llm_calls").result_rows}
    chdb_client.command(f"INSERT INTO {db}.llm_calls (timestamp, span_id, feature) VALUES (now64(6), 'old-span', 'f')")

    schema.apply_schema(chdb_client, database=database, ttl_days=0)
    schema.apply_schema(chdb_client, database=database, ttl_days=0)  # idempotent
    assert chdb_client.query(f"SELECT span_id, unit_id, unit_kind FROM {db}.llm_calls").result_rows == [
        ("old-span", "old-span", "")]
    columns = [row[0] for row in chdb_client.query(f"DESCRIBE TABLE {db}.llm_calls").result_rows]
    assert columns.index("unit_id") == columns.index("customer") + 1


def test_a_unit_alone_does_not_make_a_call_look_attributed_by_baggage(standin_server, sink):
    with unit("ticket", id="T-src"):
        _ask(openai_client(standin_server))
    attributes = sink.one_llm_span().attributes
    assert attributes[a.MARGIN_UNIT_ID] == "T-src"
    assert (attributes[a.MARGIN_FEATURE], attributes[a.MARGIN_ATTRIBUTION_SOURCE]) == (a.UNATTRIBUTED, "default")
