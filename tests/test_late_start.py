"""Spans created after their call (``otel_margin.telemetry.LateStart``) look as if started in place.

On the SDK's tracer a call's span is planned on the caller's thread (ids, sampling decision)
and created on the finisher thread. These tests pin down what must not change because of
that: parentage in both directions, one sampling decision per call, the start time, and what
span processors see at ``on_start``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler

from otel_margin import flush
from otel_margin.call import Attribution, LLMCall
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import in_process_transport, openai_client
from otel_margin.telemetry import LateStart, PlannedSpan, Telemetry

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in two lines."}]


class CountingSampler(Sampler):
    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.calls = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "counting"


class OnStart(SpanProcessor):
    """Notes, for each span started, the parent span and baggage its ``on_start`` was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        parent = trace.get_current_span(parent_context).get_span_context()
        self.seen.append((span.name, parent.span_id, baggage.get_baggage("margin.customer", parent_context)))


class Setup:
    def __init__(self, sampler: Sampler, **provider: Any) -> None:
        self.sampler = CountingSampler(sampler)
        self.provider = TracerProvider(sampler=self.sampler, **provider)
        self.on_start = OnStart()
        self.provider.add_span_processor(self.on_start)
        self.exporter = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.during: list[trace.SpanContext] = []
        self.client = openai_client(in_process_transport())
        # What the HTTP layer sees as the current span while the SDK sends the request.
        self.client._client.event_hooks = {"request": [lambda request: self.during.append(
            trace.get_current_span().get_span_context())]}

    def spans(self) -> list[Any]:
        flush()
        return list(self.exporter.get_finished_spans())

    def llm_span(self) -> Any:
        (span,) = [s for s in self.spans() if s.instrumentation_scope.name == "otel_margin"]
        return span


@contextmanager
def _setup(sampler: Sampler, **provider: Any) -> Iterator[Setup]:
    setup = Setup(sampler, **provider)
    instrumentor = OpenAIMarginInstrumentor()
    instrumentor.instrument(tracer_provider=setup.provider,
                            meter_provider=MeterProvider(metric_readers=[setup.reader]))
    try:
        yield setup
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def on() -> Iterator[Setup]:
    with _setup(ParentBased(ALWAYS_ON)) as setup:
        yield setup


@pytest.fixture
def off() -> Iterator[Setup]:
    with _setup(ALWAYS_OFF) as setup:
        yield setup


@pytest.mark.parametrize("stream", [False, True])
def test_span_is_child_of_the_caller_and_parent_of_what_the_call_does(on: Setup, stream: bool) -> None:
    outer = on.provider.get_tracer("app")
    with outer.start_as_current_span("handle request") as request:
        before = time.time_ns()
        result = on.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
        if stream:
            list(result)
        returned = time.time_ns()
    span = on.llm_span()
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    (seen,) = on.during
    # What ran inside the call pointed at the span that was created later, flags included.
    assert seen == span.context
    assert seen.trace_flags.sampled
    assert before <= span.start_time <= span.end_time <= returned
    assert on.sampler.calls == 2  # the app's span and ours: one decision each


def test_root_call_gets_a_new_trace(on: Setup) -> None:
    on.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = on.llm_span()
    assert span.parent is None and span.context.trace_id != 0
    assert on.during == [span.context]


def test_decided_at_the_finish_when_nothing_reads_it_during_the_call(on: Setup) -> None:
    on.client._client.event_hooks = {"request": []}
    outer = on.provider.get_tracer("app")
    with outer.start_as_current_span("handle request") as request:
        for _ in on.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    span = on.llm_span()
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_flags.sampled and span.context.span_id != request.get_span_context().span_id
    assert on.sampler.calls == 2


def test_processors_on_start_get_the_callers_context(on: Setup) -> None:
    outer = on.provider.get_tracer("app")
    with outer.start_as_current_span("handle request") as request:
        token = otel_context.attach(baggage.set_baggage("margin.customer", "acme"))
        try:
            on.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            otel_context.detach(token)
    on.spans()
    ours = [seen for seen in on.on_start.seen if seen[0].startswith("chat ")]
    assert ours == [("chat gpt-4o-mini", request.get_span_context().span_id, "acme")]


def test_dropped_by_the_sampler_is_not_recorded_but_still_measured(off: Setup) -> None:
    off.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert off.spans() == []
    (seen,) = off.during
    assert seen.is_valid and not seen.trace_flags.sampled  # children follow the decision
    assert off.sampler.calls == 1
    names = {m.name for rm in off.reader.get_metrics_data().resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert "gen_ai.client.operation.duration" in names


def test_late_start_is_for_the_sdk_tracer_only() -> None:
    assert LateStart.of(trace.NoOpTracer()) is None
    assert LateStart.of(TracerProvider().get_tracer("x")) is not None
    # A tracer of another provider starts its spans in place.
    telemetry = Telemetry(trace.NoOpTracerProvider())
    call = LLMCall(provider="openai", operation="chat", request_model="m", params={}, attribution=Attribution())
    span, owned = telemetry.start_span(call)
    assert owned and not isinstance(span, PlannedSpan)


def test_proxy_tracer_plans_once_its_provider_is_set() -> None:
    telemetry = Telemetry()
    proxy = trace.ProxyTracer("otel_margin")
    telemetry.tracer = proxy
    assert telemetry._late_start() is None  # no provider yet: spans start in place
    proxy._real_tracer = TracerProvider().get_tracer("otel_margin")
    assert telemetry._late_start() is not None


def test_disabled_tracer_records_no_span_and_children_see_the_parent() -> None:
    try:
        from opentelemetry.sdk.trace import _TracerConfig

        configurator = {"_tracer_configurator": lambda scope: _TracerConfig(is_enabled=scope.name != "otel_margin")}
        TracerProvider(**configurator)
    except (ImportError, TypeError):
        pytest.skip("this opentelemetry-sdk has no tracer configurator")
    with _setup(ParentBased(ALWAYS_ON), **configurator) as setup:
        with setup.provider.get_tracer("app").start_as_current_span("handle request") as request:
            setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert [s.name for s in setup.spans()] == ["handle request"]
        assert setup.during == [request.get_span_context()]
