"""Shared fixtures for the instrumentation tests.

Everything here is opt-in by fixture name: nothing is autouse and nothing instruments the
SDKs for every test file. The instrumentation test modules declare their own autouse
fixtures on top of these.

* ``otel`` (session): an SDK ``TracerProvider`` with an ``InMemorySpanExporter`` and a
  ``MeterProvider`` with an ``InMemoryMetricReader`` (delta temporality, so each read sees only
  what happened since the last one). The providers are passed explicitly to instrumentors
  and clients; the global providers are left alone.
* ``sink``: ``otel``, cleared before the test.
* ``standin_server`` (session): the local OpenAI / Anthropic stand-in on a loopback socket.
* ``instrumented`` / ``instrumented_module``: both otel-margin instrumentors on, off after.
* ``register_plugin``: registers test guardrail plugins on ``otel_margin.pluginhost.pm`` and
  unregisters them after the test.
* ``oracle``: independent computations of the expected usage and cost from the SDK's own
  parsed response objects and the ``genai_prices`` catalog (not from otel-margin's code).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

import pytest
from otel_margin import flush, hookimpl
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

LLM_SPAN_KEYS = ("gen_ai.operation.name", "gen_ai.system", "llm.request.type")
"""A span carrying any of these is an LLM span (ours, a peer's, or the Anthropic SDK's own)."""


class OTelSink:
    """Spans and metric points recorded by the test providers."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        delta = AggregationTemporality.DELTA
        self.reader = InMemoryMetricReader(
            preferred_temporality={Counter: delta, Histogram: delta, UpDownCounter: delta}
        )
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def clear(self) -> None:
        """Forget every span and every metric point recorded so far."""
        flush()
        self.exporter.clear()
        self.reader.get_metrics_data()

    def spans(self) -> list[ReadableSpan]:
        """Every finished span (calls that returned are finished first)."""
        flush()
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        """Finished spans that are LLM spans, whoever made them."""
        return [s for s in self.spans() if any(k in (s.attributes or {}) for k in LLM_SPAN_KEYS)]

    def one_llm_span(self) -> ReadableSpan:
        """The one LLM span recorded; fails the test when there are none or several."""
        spans = self.llm_spans()
        assert len(spans) == 1, [(s.name, s.instrumentation_scope.name) for s in spans]
        return spans[0]

    def metric_points(self, name: str) -> list[Any]:
        """Data points of metric ``name`` recorded since the last read (any scope)."""
        flush()
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def metrics(self) -> dict[str, list[Any]]:
        """Every metric recorded since the last read, by name: ``(metric, points)``."""
        flush()
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found.setdefault(metric.name, []).append(metric)
        return found


@pytest.fixture(scope="session")
def otel() -> OTelSink:
    """The session's test tracer and meter providers."""
    return OTelSink()


@pytest.fixture
def sink(otel: OTelSink) -> OTelSink:
    """The test providers, emptied before the test."""
    otel.clear()
    return otel


@pytest.fixture(scope="session")
def standin_server() -> Iterator[Any]:
    """The OpenAI / Anthropic stand-in on 127.0.0.1 (one per session)."""
    from otel_margin.standin import StandInServer

    with StandInServer() as server:
        yield server


@contextmanager
def instrumentation(otel: OTelSink, *, openai: bool = True, anthropic: bool = True) -> Iterator[list[Any]]:
    """Both otel-margin instrumentors on for the block, on the test providers; off after."""
    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

    chosen = ([OpenAIMarginInstrumentor()] if openai else []) + ([AnthropicMarginInstrumentor()] if anthropic else [])
    for instrumentor in chosen:
        instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        yield chosen
    finally:
        for instrumentor in reversed(chosen):
            instrumentor.uninstrument()


@pytest.fixture
def instrumented(otel: OTelSink) -> Iterator[list[Any]]:
    """otel-margin instruments both SDKs for this test."""
    with instrumentation(otel) as instrumentors:
        yield instrumentors


@pytest.fixture(scope="module")
def instrumented_module(otel: OTelSink) -> Iterator[list[Any]]:
    """otel-margin instruments both SDKs for the whole test module."""
    with instrumentation(otel) as instrumentors:
        yield instrumentors


@pytest.fixture
def register_plugin() -> Iterator[Any]:
    """``register_plugin(plugin, name=None)``: a guardrail plugin for this test only."""
    from otel_margin.pluginhost import load_plugins, pm

    load_plugins()  # idempotent; later loads must not wipe the test plugin
    registered: list[Any] = []

    def register(plugin: Any, name: str | None = None) -> Any:
        pm.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    flush()  # the test's calls are finished while its plugins are registered
    for plugin in reversed(registered):
        if pm.is_registered(plugin):
            pm.unregister(plugin)

class CallRecords:
    """A test guardrail plugin keeping each finished call record (usage and cost as priced)."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    @hookimpl
    def margin_record(self, call: Any, response: Any) -> None:
        self.calls.append(call)


@pytest.fixture
def records(register_plugin: Any) -> CallRecords:
    """Every call finished during the test, as recorded by a ``margin_record`` plugin."""
    return register_plugin(CallRecords(), name="test-call-records")


# --- the oracle: expected numbers computed without otel-margin ------------------------------------


@dataclass(frozen=True)
class Expected:
    """Semantic-convention usage as the provider reported it."""

    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    cache_write_1h: int = 0
    """The one-hour part of ``cache_write`` (included in it)."""


class Oracle:
    """Expected usage and cost, computed from SDK response objects and genai-prices directly."""

    @staticmethod
    def openai_chat(usage: Any) -> Expected:
        """Chat Completions: ``prompt_tokens`` already includes ``cached_tokens``."""
        details = usage.prompt_tokens_details
        out_details = usage.completion_tokens_details
        return Expected(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cache_read=(details.cached_tokens or 0) if details is not None else 0,
            reasoning=(out_details.reasoning_tokens or 0) if out_details is not None else 0,
        )

    @staticmethod
    def openai_responses(usage: Any) -> Expected:
        """Responses API: ``input_tokens`` already includes ``cached_tokens``."""
        details = usage.input_tokens_details
        out_details = usage.output_tokens_details
        return Expected(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read=(details.cached_tokens or 0) if details is not None else 0,
            reasoning=(out_details.reasoning_tokens or 0) if out_details is not None else 0,
        )

    @staticmethod
    def openai_embeddings(usage: Any) -> Expected:
        """Embeddings: input only."""
        return Expected(input_tokens=usage.prompt_tokens, output_tokens=0)

    @staticmethod
    def anthropic(usage: Any) -> Expected:
        """Anthropic: ``input_tokens`` excludes cache reads and writes; semconv input includes them.

        ``cache_creation_input_tokens`` includes the one-hour writes, ``cache_creation.ephemeral_1h_input_tokens``.
        """
        read = usage.cache_read_input_tokens or 0
        write = usage.cache_creation_input_tokens or 0
        split = getattr(usage, "cache_creation", None)
        one_hour = (split.ephemeral_1h_input_tokens or 0) if split is not None else 0
        return Expected(input_tokens=usage.input_tokens + read + write, output_tokens=usage.output_tokens,
                        cache_read=read, cache_write=write, cache_write_1h=one_hour)

    @staticmethod
    def cost(expected: Expected, model: str, provider: str) -> Decimal:
        """genai-prices' total for the usage; its ``input_tokens`` counts cache reads and writes too."""
        import genai_prices

        values: dict[str, int] = {"input_tokens": expected.input_tokens, "output_tokens": expected.output_tokens}
        if expected.cache_read:
            values["cache_read_tokens"] = expected.cache_read
        if expected.cache_write:
            values["cache_write_tokens"] = expected.cache_write
        if expected.cache_write_1h:  # genai-prices prices it apart and the rest of cache_write_tokens at 5m
            values["cache_write_1h_tokens"] = expected.cache_write_1h
        if expected.reasoning:
            values["output_reasoning_tokens"] = expected.reasoning
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unsupported usage key must fail the test, not warn
            usage = genai_prices.Usage(**values)
        return genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price

    @staticmethod
    def check_usage(usage: Any, expected: Expected) -> None:
        """Assert an ``otel_margin.call.Usage`` equals ``expected`` field for field (the span lacks the 1h split)."""
        assert usage is not None and usage.source == "provider"
        got = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
               usage.cache_write_1h_tokens, usage.reasoning_tokens)
        assert got == (expected.input_tokens, expected.output_tokens, expected.cache_read, expected.cache_write,
                       expected.cache_write_1h, expected.reasoning)

    def check_span(self, span: ReadableSpan, expected: Expected, *, model: str, provider: str) -> None:
        """Assert the span's usage equals ``expected`` exactly and its cost matches to 1e-9 dollars."""
        a = span.attributes
        assert a["gen_ai.usage.input_tokens"] == expected.input_tokens
        assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == expected.cache_read
        assert a.get("gen_ai.usage.cache_creation.input_tokens", 0) == expected.cache_write
        assert a.get("gen_ai.usage.reasoning.output_tokens", 0) == expected.reasoning
        assert a["margin.usage.source"] == "provider"
        if span.attributes["gen_ai.operation.name"] != "embeddings":
            assert a["gen_ai.usage.output_tokens"] == expected.output_tokens
        assert a["gen_ai.response.model"] == model
        assert a["margin.cost.status"] == "priced"
        want = self.cost(expected, model, provider)
        assert abs(Decimal(a["margin.cost.usd"]) - want) <= Decimal("1e-9"), (a["margin.cost.usd"], want)


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """Independent expected usage / cost computations."""
    return Oracle()
