"""The finisher: calls are finished off the caller's thread, in order, and never lost.

Every test holds the finisher thread on a gate first, so "not finished yet" is a fact
rather than a race; the gate opens on a timer well after the assertion that needs it shut.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_margin import finisher
from otel_margin.finisher import FINISHER
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import openai_client

MESSAGES = [{"role": "user", "content": "Summarise this."}]


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """The finisher thread blocked until the event is set (at the latest after 20 s)."""
    gate, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait(20)

    FINISHER.submit(hold)
    assert holding.wait(20)  # the thread is inside the job: the queue is empty
    yield gate
    gate.set()
    assert FINISHER.flush(20)


def open_later(gate: threading.Event, seconds: float = 0.3) -> None:
    threading.Timer(seconds, gate.set).start()


def provider_with(processor_factory: Any) -> tuple[TracerProvider, InMemorySpanExporter, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor_factory(exporter))
    instrumentor = OpenAIMarginInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    return provider, exporter, instrumentor


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, BatchSpanProcessor])
def test_provider_force_flush_finishes_pending_calls_before_exporting(standin_server, held, processor) -> None:
    provider, exporter, instrumentor = provider_with(processor)
    try:
        response = openai_client(standin_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert response.usage.total_tokens > 0  # the caller has its result...
        assert exporter.get_finished_spans() == ()  # ...while its span waits behind the gate
        open_later(held)
        assert provider.force_flush(20_000)
        (span,) = exporter.get_finished_spans()
        assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
        assert span.attributes["margin.cost.status"] == "priced"
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def test_provider_shutdown_finishes_pending_calls_first(standin_server, held) -> None:
    provider, exporter, instrumentor = provider_with(BatchSpanProcessor)
    try:
        openai_client(standin_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        open_later(held)
        provider.shutdown()
        assert len(exporter.get_finished_spans()) == 1
    finally:
        instrumentor.uninstrument()


def test_span_keeps_the_callers_end_time_not_the_finish_time(standin_server, held) -> None:
    provider, exporter, instrumentor = provider_with(SimpleSpanProcessor)
    try:
        openai_client(standin_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        open_later(held, 0.5)
        assert provider.force_flush(20_000)
        (span,) = exporter.get_finished_spans()
        # Finished at least 0.4 s after the call returned, yet its duration is the call's own.
        assert (span.end_time - span.start_time) / 1e9 < 0.4
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def test_a_backlog_makes_callers_finish_their_own_calls(standin_server, held, monkeypatch) -> None:
    monkeypatch.setattr(finisher, "MAX_PENDING", 2)  # two calls may wait
    provider, exporter, instrumentor = provider_with(SimpleSpanProcessor)
    try:
        client = openai_client(standin_server)
        for _ in range(4):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(exporter.get_finished_spans()) == 2  # two wait; two were finished inline
        open_later(held)
        assert provider.force_flush(20_000)
        assert len(exporter.get_finished_spans()) == 4
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def test_jobs_run_in_submission_order_and_a_failing_job_stops_nothing() -> None:
    seen: list[int] = []

    def boom() -> None:
        raise RuntimeError("a job that fails")

    for index in range(50):
        FINISHER.submit(boom if index == 10 else (lambda index=index: seen.append(index)))
    assert FINISHER.flush(20)
    assert seen == [i for i in range(50) if i != 10]


def _child_call(server: Any, results: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIMarginInstrumentor().instrument(tracer_provider=provider)
    from otel_margin.standin import openai_client as client_for

    client_for(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finished = finisher.flush(20)
    results.put((finished, len(exporter.get_finished_spans())))


def test_a_forked_child_gets_its_own_finisher(standin_server) -> None:
    FINISHER.submit(lambda: None)  # the parent's thread is running before the fork
    assert FINISHER.flush(20)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_child_call, args=(standin_server, results))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert results.get(timeout=5) == (True, 1)
