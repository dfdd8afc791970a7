"""The guardrail hook flow, exercised with test plugins through the real SDKs.

limits → cache → routing → provider call → record; a plugin's failure fails open; a block
raises MarginLimitExceeded naming customer, feature, limit and spend.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_margin import CacheHit, LimitDecision, MarginLimitExceeded, attribute, flush, hookimpl
from otel_margin import attributes as attr
from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.pluginhost import pm
from otel_margin.standin import StandInServer, anthropic_client, openai_client

MESSAGES = [{"role": "user", "content": "What is our gross margin?"}]


@pytest.fixture(scope="module")
def server():
    with StandInServer() as running:
        yield running


@pytest.fixture()
def telemetry():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield exporter, reader
    flush()  # the test's calls finish with the test: later tests' plugins never see them
    for instrumentor in instrumentors:
        instrumentor.uninstrument()


@pytest.fixture()
def register():
    registered = []

    def _register(plugin, name):
        pm.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield _register
    flush()  # the test's calls are finished while its plugins are registered
    for plugin in registered:
        pm.unregister(plugin)


def llm_spans(exporter):
    flush()  # calls that returned are finished off-thread
    return [s for s in exporter.get_finished_spans() if attr.GEN_AI_OPERATION_NAME in (s.attributes or {})]


class Recorder:
    """Records the order hooks run in and what record saw."""

    def __init__(self):
        self.order = []
        self.recorded = []

    @hookimpl
    def margin_limit_check(self, call):
        self.order.append("limits")

    @hookimpl
    def margin_cache_lookup(self, call):
        self.order.append("cache")

    @hookimpl
    def margin_route(self, call):
        self.order.append("route")

    @hookimpl
    def margin_record(self, call, response):
        self.order.append("record")
        self.recorded.append((copy.copy(call), response))


def test_hooks_run_in_order_and_record_sees_final_call(server, telemetry, register):
    recorder = register(Recorder(), "recorder")
    client = openai_client(server)
    with attribute(feature="qa", customer="acme"):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert recorder.order == ["cache", "limits", "route", "record"]  # limits know whether a cache answers
    call, seen = recorder.recorded[0]
    assert seen is response
    assert call.usage.input_tokens == response.usage.prompt_tokens
    assert call.cost.status == "priced" and call.cost.total > 0
    assert call.customer == "acme" and call.feature == "qa"
    assert call.estimated_input_tokens and call.estimated_input_tokens > 0


class StoredResponse:
    def __init__(self, response):
        self.response = response
        self.seen_customers = []

    @hookimpl
    def margin_cache_lookup(self, call):
        self.seen_customers.append(call.customer)
        return CacheHit(response=self.response, saved_usd=Decimal("0.0042"))


def test_cache_hit_short_circuits_the_provider(server, telemetry, register):
    exporter, _ = telemetry
    client = openai_client(server)
    original = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    register(StoredResponse(original), "stored")
    requests_before = len(server.requests)
    with attribute(feature="qa", customer="acme"):
        cached = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert cached is original
    assert len(server.requests) == requests_before  # no HTTP call made
    span = llm_spans(exporter)[-1]
    assert span.attributes[attr.MARGIN_CACHE_RESULT] == "exact"  # the hit's kind
    assert span.attributes[attr.MARGIN_USAGE_SOURCE] == "cache"  # no provider was called
    assert span.attributes[attr.MARGIN_SAVED_USD] == "0.0042"
    assert span.attributes[attr.MARGIN_COST_USD] == "0"
    assert span.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 0


class Downgrade:
    @hookimpl
    def margin_route(self, call):
        return "gpt-4o-mini" if call.model == "gpt-4o" else None


def test_route_rewrites_model_and_records_saving(server, telemetry, register):
    exporter, _ = telemetry
    register(Downgrade(), "downgrade")
    client = openai_client(server)
    response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert server.requests[-1].json["model"] == "gpt-4o-mini"
    assert response.model.startswith("gpt-4o-mini")
    span = llm_spans(exporter)[-1]
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes[attr.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert span.attributes[attr.MARGIN_ROUTE_FROM_MODEL] == "gpt-4o"
    # gpt-4o costs more than gpt-4o-mini for the same usage, so routing saved money
    assert Decimal(span.attributes[attr.MARGIN_SAVED_USD]) > 0


class Budget:
    def __init__(self, action, cap=None):
        self.action = action
        self.cap = cap

    @hookimpl
    def margin_limit_check(self, call):
        return LimitDecision(
            action=self.action,
            limit="daily budget",
            current_spend_usd=Decimal("12.50"),
            limit_usd=Decimal("10"),
            max_output_tokens=self.cap,
        )


def test_block_raises_documented_exception_and_records_span(server, telemetry, register):
    exporter, _ = telemetry
    register(Budget("block"), "budget")
    client = anthropic_client(server)
    requests_before = len(server.requests)
    with attribute(feature="assistant", customer="globex"):
        with pytest.raises(MarginLimitExceeded) as raised:
            client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
    message = str(raised.value)
    for fact in ("globex", "assistant", "daily budget", "$12.50", "$10"):
        assert fact in message
    assert raised.value.customer == "globex" and raised.value.current_spend_usd == Decimal("12.50")
    assert len(server.requests) == requests_before
    span = llm_spans(exporter)[-1]
    assert span.attributes[attr.MARGIN_LIMIT_ACTION] == "block"
    assert span.attributes[attr.ERROR_TYPE] == "MarginLimitExceeded"


def test_cap_lowers_output_tokens(server, telemetry, register):
    register(Budget("cap", cap=64), "cap")
    openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
    assert server.requests[-1].json["max_tokens"] == 64
    anthropic_client(server).messages.create(model="claude-haiku-4-5", max_tokens=1000, messages=MESSAGES)
    assert server.requests[-1].json["max_tokens"] == 64


def test_strictest_decision_wins(server, telemetry, register):
    register(Budget("cap", cap=64), "cap")
    register(Budget("block"), "block")
    with pytest.raises(MarginLimitExceeded):
        openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


class Broken:
    @hookimpl
    def margin_limit_check(self, call):
        raise RuntimeError("limit store down")

    @hookimpl
    def margin_cache_lookup(self, call):
        raise RuntimeError("cache down")

    @hookimpl
    def margin_route(self, call):
        raise RuntimeError("router down")

    @hookimpl
    def margin_record(self, call, response):
        raise RuntimeError("spend store down")


def test_broken_plugin_fails_open_and_is_counted(server, telemetry, register):
    exporter, reader = telemetry
    register(Broken(), "broken")
    recorder = register(Recorder(), "recorder")
    response = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content
    assert recorder.order == ["cache", "limits", "route", "record"]  # others still ran
    span = llm_spans(exporter)[-1]
    assert list(span.attributes[attr.MARGIN_GUARDRAIL_ERRORS]) == ["broken"]
    counted = [
        point.value
        for metric in _metrics(reader)
        if metric.name == attr.METRIC_INTERNAL_ERRORS
        for point in metric.data.data_points
    ]
    assert sum(counted) == 4


class FailClosed:
    @hookimpl
    def margin_limit_check(self, call):
        raise MarginLimitExceeded(
            customer=call.customer, feature=call.feature,
            decision=LimitDecision(action="block", limit="budget store unreachable (fail-closed)"),
        )


def test_fail_closed_budget_reaches_the_caller(server, telemetry, register):
    register(FailClosed(), "fail-closed")
    with pytest.raises(MarginLimitExceeded, match="fail-closed"):
        openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


class SubsetArgs:
    def __init__(self):
        self.called = 0

    @hookimpl
    def margin_record(self, call):  # takes a subset of the spec's arguments
        self.called += 1


def test_hooks_may_take_a_subset_of_arguments(server, telemetry, register):
    plugin = register(SubsetArgs(), "subset")
    openai_client(server).embeddings.create(model="text-embedding-3-small", input="hello")
    assert plugin.called == 1


def test_provider_error_is_recorded_and_reraised_unchanged(server, telemetry, register):
    recorder = register(Recorder(), "recorder")
    exporter, _ = telemetry
    with pytest.raises(openai.RateLimitError):
        openai_client(server).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-standin-scenario": "error-429"}
        )
    call, response = recorder.recorded[-1]
    assert response is None and call.error_type == "RateLimitError"
    assert llm_spans(exporter)[-1].attributes[attr.ERROR_TYPE] == "RateLimitError"


def _metrics(reader):
    flush()
    data = reader.get_metrics_data()
    return [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
