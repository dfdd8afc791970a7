"""The OpenAI instrumentor against the real ``openai`` SDK over HTTP (the local stand-in).

Every test compares what the span says with what the SDK itself parsed from the provider's
reply (exact token counts) and with genai-prices computed independently (cost to 1e-9 $).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pydantic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_margin import attribute
from otel_margin.standin import openai_client

SCENARIO = "x-standin-scenario"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in two lines."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Weather(pydantic.BaseModel):
    city: str
    celsius: float


class Answer(pydantic.BaseModel):
    text: str


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any, sink: Any) -> None:
    """otel-margin on for this module; spans and metrics cleared before each test."""


@pytest.fixture(scope="module")
def client(standin_server: Any, instrumented_module: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture
def aclient(standin_server: Any, instrumented_module: Any) -> openai.AsyncOpenAI:
    # Per test: an async client's pooled connections belong to the test's event loop.
    return openai_client(standin_server, async_=True)


def headers(scenario: str) -> dict[str, str]:
    return {SCENARIO: scenario} if scenario else {}


# --- chat completions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario, model, extra",
    [
        ("", "gpt-4o-mini", {}),
        ("cached", "gpt-4o", {}),
        ("reasoning", "o3-mini", {}),
        ("cached,reasoning", "gpt-5-mini", {}),
        ("tools", "gpt-4.1-mini", {"tools": [WEATHER_TOOL]}),
        ("", "gpt-4o-mini", {"n": 3}),
    ],
    ids=["plain", "cached", "reasoning", "cached-reasoning", "tools", "n3"],
)
def test_chat_create_exact_usage_cost_and_shape(client, sink, oracle, scenario, model, extra) -> None:
    with attribute(feature="summarize", customer="acme", tier="pro", cohort="2025-q3"):
        response = client.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers=headers(scenario), **extra
        )

    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_chat(response.usage), model=response.model, provider="openai")
    assert span.name == f"chat {model}"
    assert span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == "otel_margin"
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.response.model"] == response.model != model  # the dated snapshot
    assert a["gen_ai.response.id"] == response.id
    assert list(a["gen_ai.response.finish_reasons"]) == [c.finish_reason for c in response.choices]
    assert a["gen_ai.request.stream"] is False
    assert (a["margin.feature"], a["margin.customer"], a["margin.tier"], a["margin.cohort"]) == (
        "summarize", "acme", "pro", "2025-q3",
    )
    assert a["margin.attribution.source"] == "api"
    assert a["margin.price.version"].startswith("genai-prices-")
    if scenario == "tools":
        assert response.choices[0].finish_reason == "tool_calls"
    if "cached" in scenario:
        assert a["gen_ai.usage.cache_read.input_tokens"] > 0
    if "reasoning" in scenario:
        assert a["gen_ai.usage.reasoning.output_tokens"] > 0
    if "n" in extra:
        assert len(a["gen_ai.response.finish_reasons"]) == 3


def test_unattributed_call_is_recorded_not_dropped(client, sink) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = sink.one_llm_span().attributes
    assert a["margin.feature"] == "unattributed"
    assert "margin.customer" not in a and "margin.tier" not in a


async def test_async_chat_create(aclient, sink, oracle) -> None:
    async with attribute(feature="chat-async", customer="globex"):
        response = await aclient.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=headers("cached")
        )
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_chat(response.usage), model=response.model, provider="openai")
    assert span.attributes["margin.feature"] == "chat-async"
    assert span.attributes["margin.customer"] == "globex"


def test_chat_parse_with_pydantic_response_format_and_tool(client, sink, oracle) -> None:
    # The stand-in answers tool calls with schema-valid arguments (content None, so the
    # response_format is not applied to text the stand-in cannot shape).
    response = client.chat.completions.parse(
        model="gpt-4o-mini",
        messages=MESSAGES,
        response_format=Answer,
        tools=[openai.pydantic_function_tool(Weather)],
        extra_headers=headers("tools"),
    )
    assert isinstance(response.choices[0].message.tool_calls[0].function.parsed_arguments, Weather)
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_chat(response.usage), model=response.model, provider="openai")
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == ["tool_calls"]


async def test_async_chat_parse(aclient, sink, oracle) -> None:
    response = await aclient.chat.completions.parse(
        model="gpt-4o-mini", messages=MESSAGES, tools=[openai.pydantic_function_tool(Weather)],
        extra_headers=headers("tools"),
    )
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(response.usage), model=response.model,
                      provider="openai")


@pytest.mark.parametrize("scenario", ["", "cached,reasoning", "tools"])
def test_chat_stream_with_callers_include_usage(client, sink, oracle, scenario) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_headers=headers(scenario), tools=[WEATHER_TOOL],
    )
    chunks = list(stream)
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1 and usage_chunks[0].usage is not None  # the caller asked for it: visible
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_chat(usage_chunks[0].usage), model=chunks[0].model, provider="openai")
    assert span.attributes["gen_ai.request.stream"] is True
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == reasons


def test_chat_stream_usage_injection_keeps_the_callers_extra_body(client, sink, standin_server) -> None:
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"metadata": {"ticket": "42"}}
    ))
    body = standin_server.requests[-1].json
    assert body["metadata"] == {"ticket": "42"} and body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert sink.one_llm_span().attributes["margin.usage.source"] == "provider"


def test_chat_stream_caller_extra_body_stream_options_win(client, sink, standin_server) -> None:
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"stream_options": {"include_usage": False}}
    ))
    assert standin_server.requests[-1].json["stream_options"] == {"include_usage": False}
    assert all(c.choices for c in chunks)
    assert sink.one_llm_span().attributes["margin.usage.source"] == "estimated"


def test_chat_stream_injected_usage_is_exact(client, sink, oracle, standin_server) -> None:
    reference = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("cached"))
    sink.clear()
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers("cached")
    ))
    assert standin_server.requests[-1].json["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)  # the injected usage-only chunk is hidden
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(reference.usage), model=reference.model,
                      provider="openai")


async def test_async_chat_stream(aclient, sink, oracle) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_headers=headers("reasoning"), n=2,
    )
    assert isinstance(stream, openai.AsyncStream)
    chunks = [c async for c in stream]
    usage = [c for c in chunks if not c.choices][0].usage
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_chat(usage), model=chunks[0].model, provider="openai")
    assert len(span.attributes["gen_ai.response.finish_reasons"]) == 2


def test_chat_stream_helper(client, sink, oracle, standin_server) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.done" in events
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(final.usage), model=final.model, provider="openai")


async def test_async_chat_stream_helper(aclient, sink, oracle) -> None:
    async with aclient.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(final.usage), model=final.model, provider="openai")


def test_chat_stream_helper_without_include_usage_sees_what_it_would_without_us(client, sink) -> None:
    # The caller did not ask for usage: the final completion has none, as without instrumentation,
    # while the span still gets the exact numbers through the injected (hidden) usage chunk.
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.usage is None
    a = sink.one_llm_span().attributes
    assert a["margin.usage.source"] == "provider"
    assert a["gen_ai.usage.output_tokens"] == 20


# --- responses API ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["", "cached", "reasoning", "tools"])
def test_responses_create(client, sink, oracle, scenario) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}]
    with attribute(feature="agent", tier="free"):
        response = client.responses.create(model="gpt-5", input="Plan my week.", tools=tools,
                                           extra_headers=headers(scenario))
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_responses(response.usage), model=response.model, provider="openai")
    assert span.name == "chat gpt-5"
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == [response.status]
    assert span.attributes["margin.tier"] == "free"


async def test_async_responses_create_and_parse(aclient, sink, oracle) -> None:
    response = await aclient.responses.create(model="gpt-5-mini", input="hi", extra_headers=headers("cached"))
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(response.usage), model=response.model,
                      provider="openai")
    sink.clear()
    parsed = await aclient.responses.parse(model="gpt-5-mini", input="hi")
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(parsed.usage), model=parsed.model,
                      provider="openai")


def test_responses_parse(client, sink, oracle) -> None:
    parsed = client.responses.parse(model="gpt-4.1", input="hi", extra_headers=headers("reasoning"))
    assert type(parsed).__name__.startswith("ParsedResponse")  # openai 2.x names it ParsedResponse[NoneType]
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(parsed.usage), model=parsed.model,
                      provider="openai")


def test_responses_stream_create(client, sink, oracle) -> None:
    stream = client.responses.create(model="gpt-5", input="hi", stream=True, extra_headers=headers("reasoning"))
    assert isinstance(stream, openai.Stream)
    events = list(stream)
    final = events[-1].response
    span = sink.one_llm_span()
    oracle.check_span(span, oracle.openai_responses(final.usage), model=final.model, provider="openai")
    assert span.attributes["gen_ai.request.stream"] is True


def test_responses_stream_helper(client, sink, oracle) -> None:
    with client.responses.stream(model="gpt-5", input="hi", extra_headers=headers("cached")) as stream:
        final = stream.get_final_response()
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(final.usage), model=final.model,
                      provider="openai")


async def test_async_responses_stream_helper(aclient, sink, oracle) -> None:
    async with aclient.responses.stream(model="gpt-5", input="hi") as stream:
        final = await stream.get_final_response()
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(final.usage), model=final.model,
                      provider="openai")


# --- embeddings -----------------------------------------------------------------------------------


def test_embeddings(client, sink, oracle) -> None:
    response = client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    span = sink.one_llm_span()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert "gen_ai.usage.output_tokens" not in span.attributes
    oracle.check_span(span, oracle.openai_embeddings(response.usage), model=response.model, provider="openai")


async def test_async_embeddings(aclient, sink, oracle) -> None:
    response = await aclient.embeddings.create(model="text-embedding-3-large", input="alpha")
    oracle.check_span(sink.one_llm_span(), oracle.openai_embeddings(response.usage), model=response.model,
                      provider="openai")


# --- raw and streaming responses ------------------------------------------------------------------


def test_with_raw_response(client, sink, oracle) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES,
                                                            extra_headers=headers("cached"))
    assert raw.headers["x-request-id"].startswith("req_")
    response = raw.parse()
    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert raw.parse() is response
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(response.usage), model=response.model,
                      provider="openai")


async def test_async_with_raw_response(aclient, sink, oracle) -> None:
    raw = await aclient.responses.with_raw_response.create(model="gpt-5", input="hi")
    response = raw.parse()
    oracle.check_span(sink.one_llm_span(), oracle.openai_responses(response.usage), model=response.model,
                      provider="openai")


def test_with_streaming_response_non_stream(client, sink, oracle) -> None:
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES) as raw:
        response = raw.parse()
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(response.usage), model=response.model,
                      provider="openai")


def test_with_streaming_response_stream(client, sink, oracle) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as raw:
        chunks = list(raw.parse())
    usage = [c for c in chunks if not c.choices][0].usage
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(usage), model=chunks[0].model, provider="openai")


async def test_async_with_streaming_response(aclient, sink, oracle) -> None:
    async with aclient.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as raw:
        response = await raw.parse()
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(response.usage), model=response.model,
                      provider="openai")


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario, error", [("error-429", openai.RateLimitError),
                                             ("error-500", openai.InternalServerError),
                                             ("error-400", openai.BadRequestError)])
def test_provider_error_recorded_and_reraised_unchanged(client, sink, scenario, error) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers(scenario))
    # The exception object is the SDK's own, untouched: exact type, status, body, raised by the SDK.
    assert type(caught.value) is error
    assert caught.value.__cause__ is None
    assert caught.value.status_code == int(scenario[-3:])
    assert str(caught.traceback[-1].path).endswith("_base_client.py")
    span = sink.one_llm_span()
    assert span.attributes["error.type"] == error.__qualname__
    assert span.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert any(event.name == "exception" for event in span.events)


async def test_async_provider_error(aclient, sink) -> None:
    with pytest.raises(openai.RateLimitError):
        await aclient.responses.create(model="gpt-5", input="hi", extra_headers=headers("error-429"))
    assert sink.one_llm_span().attributes["error.type"] == "RateLimitError"


def test_error_is_the_same_as_without_instrumentation(standin_server, sink) -> None:
    plain = openai_client(standin_server)
    with pytest.raises(openai.RateLimitError) as instrumented_error:
        plain.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("error-429"))
    original = openai.resources.chat.completions.completions.Completions.create.__wrapped__
    with pytest.raises(openai.RateLimitError) as bare_error:
        original(plain.chat.completions, model="gpt-4o-mini", messages=MESSAGES,
                 extra_headers=headers("error-429"))
    assert str(instrumented_error.value) == str(bare_error.value)
    assert instrumented_error.value.body == bare_error.value.body


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_follow_semconv_and_have_no_customer_label(client, sink) -> None:
    with attribute(feature="summarize", customer="acme", tier="pro"):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                   extra_headers=headers("cached"))
    cost_usd = Decimal(sink.one_llm_span().attributes["margin.cost.usd"])
    metrics = sink.metrics()

    (tokens,) = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert by_type["input"].sum == response.usage.prompt_tokens
    assert by_type["output"].sum == response.usage.completion_tokens
    assert tuple(by_type["input"].explicit_bounds) == (
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    )
    point = by_type["input"]
    assert point.attributes["gen_ai.operation.name"] == "chat"
    assert point.attributes["gen_ai.provider.name"] == "openai"
    assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert point.attributes["gen_ai.response.model"] == response.model

    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.count == 1
    assert tuple(point.explicit_bounds) == (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    )

    (cost,) = metrics["margin.cost"]
    (point,) = cost.data.data_points
    assert point.value == pytest.approx(float(cost_usd))
    assert point.attributes["margin.feature"] == "summarize"
    assert point.attributes["margin.tier"] == "pro"
    assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    for metric_list in metrics.values():
        for metric in metric_list:
            for p in metric.data.data_points:
                assert "margin.customer" not in p.attributes, metric.name


def test_error_metrics_carry_error_type(client, sink) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("error-500"))
    metrics = sink.metrics()
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.data.data_points[0].attributes["error.type"] == "InternalServerError"
    assert "gen_ai.client.token.usage" not in metrics
