"""The batch deduplication token: a retry is stored once, two batches of one trace both are.

An agent makes several LLM calls in one trace, and the span processor may export them in
separate batches. The token ClickHouse deduplicates inserts by must tell those batches apart
(span ids), while a retry of one batch (the same spans) keeps its token. The end-to-end tests
drive the real openai SDK against the local stand-in, through the instrumentor, the SDK's
batch span processor and the exporter, into a real chDB.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from hypothesis import given, settings, strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_margin import attribute, flush
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter, batch_token
from otel_margin.exporters.rows import COLUMN_NAMES
from otel_margin.exporters.storage import StorageConfig, session
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import openai_client

MESSAGES = [{"role": "user", "content": "plan the next step"}]

trace_ids = st.text("0123456789abcdef", min_size=32, max_size=32)
span_ids = st.text("0123456789abcdef", min_size=16, max_size=16)


def row(trace_id: str, span_id: str, **values: Any) -> list[Any]:
    """An exporter row (column order of ``COLUMN_NAMES``) with the given ids; other cells arbitrary."""
    cells: list[Any] = [values.get(name, "") for name in COLUMN_NAMES]
    cells[COLUMN_NAMES.index("trace_id")] = trace_id
    cells[COLUMN_NAMES.index("span_id")] = span_id
    return cells


@settings(max_examples=200, deadline=None)
@given(trace=trace_ids, first=st.lists(span_ids, min_size=1, max_size=5, unique=True),
       second=st.lists(span_ids, min_size=1, max_size=5, unique=True))
def test_two_batches_of_one_trace_get_different_tokens(trace: str, first: list[str], second: list[str]) -> None:
    # Batches of one trace whose spans differ must never share a token: ClickHouse would drop one.
    a = [row(trace, span) for span in first]
    b = [row(trace, span) for span in second]
    assert (batch_token(a) == batch_token(b)) == (first == second)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.tuples(trace_ids, span_ids), min_size=1, max_size=6, unique=True), data=st.data())
def test_a_retried_batch_keeps_its_token_and_another_batch_does_not(ids: list[tuple[str, str]], data: Any) -> None:
    batch = [row(trace, span, customer="acme") for trace, span in ids]
    retry = [row(trace, span, customer="acme") for trace, span in ids]
    assert batch_token(batch) == batch_token(retry)  # the replay after a crash is a no-op
    other = data.draw(st.lists(st.tuples(trace_ids, span_ids), min_size=1, max_size=6, unique=True))
    if other != ids:
        assert batch_token([row(t, s) for t, s in other]) != batch_token(batch)


def test_a_token_is_a_sha256_hex_digest() -> None:
    # insert_deduplication_token is an arbitrary string, but a fixed-size digest keeps settings small.
    token = batch_token([row("a" * 32, "b" * 16)])
    assert len(token) == 64 and set(token) <= set("0123456789abcdef")


# --- end to end: one agent trace, several batches, real chDB --------------------------------------


@pytest.fixture
def agent(tmp_path, standin_server) -> Iterator[Any]:
    """An instrumented openai client whose spans go through a batch processor into embedded chDB."""
    config = StorageConfig(endpoint=f"chdb://{tmp_path / 'chdb'}", database="otel_margin",
                           spool_dir=str(tmp_path / "spool"), timeout=5)
    # A drain interval longer than the test: only the flushes below write, one batch each.
    exporter = ClickHouseSpanExporter(endpoint=config.endpoint, spool_dir=config.spool_dir, drain_interval=600)
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    instrumentor = OpenAIMarginInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider())
    try:
        yield provider, exporter, openai_client(standin_server), config
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def stored(config: StorageConfig) -> list[tuple[str, str, str]]:
    with session(config) as client:
        return [tuple(r) for r in client.query(
            "SELECT trace_id, span_id, feature FROM otel_margin.llm_calls ORDER BY feature").result_rows]


def test_an_agent_trace_exported_in_several_batches_stores_every_call(agent) -> None:
    provider, exporter, client, config = agent
    tracer = provider.get_tracer("agent")
    steps = [f"step-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    with tracer.start_as_current_span("agent run") as run:
        for step in steps:
            with attribute(feature=step):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            flush()  # the call's span is finished
            assert provider.force_flush(10_000)  # ... exported alone, as one batch
            assert exporter.force_flush(10_000)  # ... and inserted alone
    provider.force_flush(10_000)
    exporter.shutdown()
    rows = stored(config)
    trace = format(run.get_span_context().trace_id, "032x")
    assert [feature for _, _, feature in rows] == sorted(steps)
    assert {trace_id for trace_id, _, _ in rows} == {trace}
    assert len({span_id for _, span_id, _ in rows}) == len(steps)


def test_the_same_agent_batch_exported_twice_is_stored_once(agent) -> None:
    provider, exporter, client, config = agent
    # Keep the finished spans to export them a second time, as a replay after a lost response would.
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("agent run"):
        for i in range(2):
            with attribute(feature=f"twice-{i}"):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    flush()
    assert provider.force_flush(10_000) and exporter.force_flush(10_000)
    spans = [s for s in memory.get_finished_spans() if s.name.startswith("chat ")]
    assert len(spans) == 2
    exporter.export(spans)  # the same batch again
    assert exporter.force_flush(10_000)
    exporter.shutdown()
    assert [feature for _, _, feature in stored(config)] == ["twice-0", "twice-1"]
