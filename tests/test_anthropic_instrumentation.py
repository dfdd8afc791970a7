"""The Anthropic instrumentor against the real ``anthropic`` SDK over HTTP (the local stand-in).

Anthropic's ``input_tokens`` excludes cache reads and writes; the span's
``gen_ai.usage.input_tokens`` is their sum. A streamed message's output count is the last
``message_delta`` value (cumulative), never ``message_start`` + deltas.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_margin import attribute
from otel_margin.standin import anthropic_client

SCENARIO = "x-standin-scenario"
MESSAGES = [{"role": "user", "content": "Draft a reply to the customer."}]
TOOLS = [{"name": "lookup_order", "description": "Find an order",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}]
THINKING = {"type": "enabled", "budget_tokens": 1024}

# The SDK warns about retiring model names; the stand-in answers them as the API does.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any, sink: Any) -> None:
    """otel-margin on for this module; spans and metrics cleared before each test."""


@pytest.fixture(scope="module")
def client(standin_server: Any, otel: Any, instrumented_module: Any) -> anthropic.Anthropic:
    # The SDK traces itself into the test provider, so a second LLM span would be seen.
    return anthropic_client(standin_server, open_telemetry={"tracer_provider": otel.tracer_provider})


@pytest.fixture
def aclient(standin_server: Any, otel: Any, instrumented_module: Any) -> anthropic.AsyncAnthropic:
    return anthropic_client(standin_server, async_=True, open_telemetry={"tracer_provider": otel.tracer_provider})


def headers(scenario: str) -> dict[str, str]:
    return {SCENARIO: scenario} if scenario else {}


def cached_system(marker: str) -> list[dict[str, Any]]:
    """A system prompt with a cache breakpoint, unique per test so the stand-in's cache starts cold."""
    text = f"You are the support assistant of tenant {marker}. " + "Policy text. " * 40
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def one_hour_then_five_minute(marker: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system, messages) with a 1h breakpoint then a 5m one (Anthropic wants longer TTLs first)."""
    text = f"Contract terms of tenant {marker}. " + "Clause text. " * 60
    system = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    question = {"type": "text", "text": "Summarise the clauses about refunds. " * 10,
                "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "user", "content": [question]}]
    return system, messages


def streamed_expectation(oracle: Any, events: list[Any]) -> Any:
    """Usage of a raw event stream: input side from message_start, output from the LAST message_delta."""
    start = next(e for e in events if e.type == "message_start").message.usage
    deltas = [e for e in events if e.type == "message_delta"]
    usage = start.model_copy(update={"output_tokens": deltas[-1].usage.output_tokens})
    return oracle.anthropic(usage)


@pytest.mark.parametrize(
    "scenario, model, extra",
    [
        ("", "claude-sonnet-4-5", {}),
        ("", "claude-haiku-4-5", {"thinking": THINKING}),
        ("tools", "claude-opus-4-1", {"tools": TOOLS}),
        ("", "claude-3-5-haiku-latest", {"max_tokens": 7}),
    ],
    ids=["plain", "thinking", "tools", "capped"],
)
def test_messages_create_exact_usage_cost_and_shape(client, sink, oracle, scenario, model, extra) -> None:
    kwargs = {"max_tokens": 2048, **extra}
    with attribute(feature="support", customer="initech", tier="enterprise"):
        message = client.messages.create(model=model, messages=MESSAGES, extra_headers=headers(scenario), **kwargs)

    span = sink.one_llm_span()  # also proves the SDK's own span was not opened inside our call
    oracle.check_span(span, oracle.anthropic(message.usage), model=message.model, provider="anthropic")
    assert span.name == f"chat {model}"
    assert span.kind is SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.response.id"] == message.id
    assert list(a["gen_ai.response.finish_reasons"]) == [message.stop_reason]
    assert a["gen_ai.request.stream"] is False
    assert (a["margin.feature"], a["margin.customer"], a["margin.tier"]) == ("support", "initech", "enterprise")
    if "thinking" in extra:
        assert message.content[0].type == "thinking"
    if scenario == "tools":
        assert message.stop_reason == "tool_use"
    if "max_tokens" in extra:
        assert message.stop_reason == "max_tokens" and a["gen_ai.usage.output_tokens"] == 7


def test_prompt_caching_first_writes_then_reads(client, sink, oracle) -> None:
    system = cached_system(uuid.uuid4().hex)
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, system=system, messages=MESSAGES)
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, system=system, messages=MESSAGES)
    assert first.usage.cache_creation_input_tokens > 0 and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens > 0 and not second.usage.cache_creation_input_tokens
    spans = sink.llm_spans()
    assert len(spans) == 2
    for span, message in zip(spans, (first, second)):
        oracle.check_span(span, oracle.anthropic(message.usage), model=message.model, provider="anthropic")
    # The semconv input count includes the cached part on both calls.
    assert spans[0].attributes["gen_ai.usage.input_tokens"] == spans[1].attributes["gen_ai.usage.input_tokens"]
    assert spans[0].attributes["gen_ai.usage.input_tokens"] > first.usage.input_tokens
    assert float(spans[1].attributes["margin.cost.cache_read.usd"]) > 0
    assert float(spans[0].attributes["margin.cost.cache_write.usd"]) > 0


async def test_async_messages_create_with_caching(aclient, sink, oracle) -> None:
    system = cached_system(uuid.uuid4().hex)
    for _ in range(2):
        message = await aclient.messages.create(model="claude-haiku-4-5", max_tokens=64, system=system,
                                                messages=MESSAGES)
    spans = sink.llm_spans()
    assert len(spans) == 2
    oracle.check_span(spans[1], oracle.anthropic(message.usage), model=message.model, provider="anthropic")
    assert spans[1].attributes["gen_ai.usage.cache_read.input_tokens"] == message.usage.cache_read_input_tokens > 0


@pytest.mark.parametrize("extra", [{}, {"thinking": THINKING}, {"tools": TOOLS}], ids=["plain", "thinking", "tools"])
def test_messages_create_stream_output_is_last_delta(client, sink, oracle, extra) -> None:
    system = cached_system(uuid.uuid4().hex)
    scenario = "tools" if "tools" in extra else ""
    tools = {"tools": extra["tools"]} if "tools" in extra else {}  # tools are part of the cached prefix
    client.messages.create(model="claude-sonnet-4-5", max_tokens=500, system=system, messages=MESSAGES, **tools)
    sink.clear()
    stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=500, system=system, messages=MESSAGES,
                                    stream=True, extra_headers=headers(scenario), **extra)
    assert isinstance(stream, anthropic.Stream)
    events = list(stream)
    expected = streamed_expectation(oracle, events)
    start_output = events[0].message.usage.output_tokens
    assert start_output >= 1  # the stand-in's message_start placeholder; summing would be wrong
    span = sink.one_llm_span()
    oracle.check_span(span, expected, model=events[0].message.model, provider="anthropic")
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] > 0
    assert span.attributes["gen_ai.request.stream"] is True
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == [
        [e for e in events if e.type == "message_delta"][-1].delta.stop_reason
    ]


async def test_async_messages_create_stream(aclient, sink, oracle) -> None:
    stream = await aclient.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MESSAGES,
                                           stream=True, thinking=THINKING)
    assert isinstance(stream, anthropic.AsyncStream)
    events = [e async for e in stream]
    oracle.check_span(sink.one_llm_span(), streamed_expectation(oracle, events), model=events[0].message.model,
                      provider="anthropic")


def test_messages_stream_helper(client, sink, oracle) -> None:
    system = cached_system(uuid.uuid4().hex)
    with attribute(feature="drafts"):
        for _ in range(2):  # second call reads the cache
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=300, system=system,
                                        messages=MESSAGES) as stream:
                text = "".join(stream.text_stream)
                final = stream.get_final_message()
    assert text == final.content[0].text
    spans = sink.llm_spans()
    assert len(spans) == 2
    oracle.check_span(spans[1], oracle.anthropic(final.usage), model=final.model, provider="anthropic")
    assert spans[1].attributes["gen_ai.request.stream"] is True
    assert spans[1].attributes["margin.feature"] == "drafts"
    assert spans[1].attributes["gen_ai.usage.cache_read.input_tokens"] > 0


def test_messages_stream_helper_thinking_and_tools(client, sink, oracle) -> None:
    with client.messages.stream(model="claude-opus-4-1", max_tokens=3000, messages=MESSAGES, thinking=THINKING,
                                tools=TOOLS, extra_headers=headers("tools")) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.anthropic(final.usage), model=final.model, provider="anthropic")
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == ["tool_use"]


async def test_async_messages_stream_helper(aclient, sink, oracle) -> None:
    manager = aclient.messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=MESSAGES)
    # The async stream() is a sync method returning an async context manager: nothing sent yet.
    assert not hasattr(manager, "__await__")
    assert sink.llm_spans() == []
    async with manager as stream:
        async for _ in stream.text_stream:
            pass
        final = await stream.get_final_message()
    oracle.check_span(sink.one_llm_span(), oracle.anthropic(final.usage), model=final.model, provider="anthropic")


def test_with_raw_response(client, sink, oracle) -> None:
    raw = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES)
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    oracle.check_span(sink.one_llm_span(), oracle.anthropic(message.usage), model=message.model,
                      provider="anthropic")


def test_with_streaming_response_stream(client, sink, oracle) -> None:
    with client.messages.with_streaming_response.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES, stream=True
    ) as raw:
        events = list(raw.parse())
    oracle.check_span(sink.one_llm_span(), streamed_expectation(oracle, events), model=events[0].message.model,
                      provider="anthropic")


async def test_async_with_raw_response(aclient, sink, oracle) -> None:
    raw = await aclient.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=50,
                                                          messages=MESSAGES)
    message = await raw.parse()
    oracle.check_span(sink.one_llm_span(), oracle.anthropic(message.usage), model=message.model,
                      provider="anthropic")


@pytest.mark.parametrize("scenario, error, status", [
    ("error-429", anthropic.RateLimitError, 429),
    ("error-500", anthropic.InternalServerError, 500),
    ("error-529", anthropic.OverloadedError, 529),
])
def test_provider_error_recorded_and_reraised_unchanged(client, sink, scenario, error, status) -> None:
    with pytest.raises(error) as caught:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES,
                               extra_headers=headers(scenario))
    assert type(caught.value) is error and caught.value.status_code == status
    assert caught.value.__cause__ is None
    assert str(caught.traceback[-1].path).endswith("_base_client.py")
    span = sink.one_llm_span()
    assert span.attributes["error.type"] == error.__qualname__
    assert span.status.status_code is StatusCode.ERROR


async def test_async_stream_helper_error(aclient, sink) -> None:
    with pytest.raises(anthropic.RateLimitError):
        async with aclient.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                           extra_headers=headers("error-429")):
            pass
    assert sink.one_llm_span().attributes["error.type"] == "RateLimitError"


def test_sdk_self_tracing_is_visible_without_us(standin_server, sink) -> None:
    # The control for the "one LLM span" checks above: the SDK really traces itself into
    # the test provider when otel-margin is not in the call.
    client = anthropic_client(standin_server, open_telemetry={"tracer_provider": sink.tracer_provider})
    original = anthropic.resources.messages.messages.Messages.create.__wrapped__
    original(client.messages, model="claude-sonnet-4-5", max_tokens=20, messages=MESSAGES)
    spans = sink.llm_spans()
    assert [s.instrumentation_scope.name for s in spans] == ["com.anthropic.sdk.python"]


@pytest.mark.parametrize("how", ["create", "create-stream", "stream-helper"])
def test_one_hour_cache_writes_are_priced_at_the_one_hour_rate(client, sink, oracle, records, how) -> None:
    system, messages = one_hour_then_five_minute(uuid.uuid4().hex)
    kwargs = {"model": "claude-sonnet-4-5", "max_tokens": 200, "system": system, "messages": messages}
    if how == "create":
        message = client.messages.create(**kwargs)
    elif how == "create-stream":
        events = list(client.messages.create(stream=True, **kwargs))
        message = next(e for e in events if e.type == "message_start").message
        last = [e for e in events if e.type == "message_delta"][-1]
        message = message.model_copy(update={"usage": message.usage.model_copy(
            update={"output_tokens": last.usage.output_tokens})})
    else:
        with client.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
    usage, model = message.usage, message.model
    # The provider's own split: both TTLs written, together the cache-creation total.
    split = usage.cache_creation
    assert split.ephemeral_1h_input_tokens > 0 and split.ephemeral_5m_input_tokens > 0
    assert split.ephemeral_1h_input_tokens + split.ephemeral_5m_input_tokens == usage.cache_creation_input_tokens
    expected = oracle.anthropic(usage)
    assert expected.cache_write_1h == split.ephemeral_1h_input_tokens

    span = sink.one_llm_span()
    oracle.check_span(span, expected, model=model, provider="anthropic")  # genai-prices with the 1h split
    (call,) = records.calls
    oracle.check_usage(call.usage, expected)
    cost = call.cost
    assert (cost.status, cost.price_source) == ("priced", "catalog")  # the catalog's 1h price, not the rule
    want = oracle.cost(expected, model, "anthropic")
    assert abs(cost.total - want) <= Decimal("1e-9")
    # Sonnet 4.5 below 200k input: 5m writes $3.75/MTok, 1h writes $6/MTok, both in the cache_write component.
    five_minute = expected.cache_write - expected.cache_write_1h
    assert cost.cache_write == (five_minute * Decimal("3.75") + expected.cache_write_1h * 6) / 1_000_000
    assert Decimal(span.attributes["margin.cost.cache_write.usd"]) == cost.cache_write
    all_at_five_minute = expected.cache_write * Decimal("3.75") / 1_000_000
    assert cost.cache_write - all_at_five_minute == expected.cache_write_1h * Decimal("2.25") / 1_000_000
