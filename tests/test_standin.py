"""The stand-in speaks OpenAI and Anthropic well enough for the real SDKs, with exact usage.

Every SDK-level test runs twice: over a loopback socket (``StandInServer``) and with no socket
(``in_process_transport``). Expected token numbers are worked out by hand from the documented
rule (word runs + punctuation marks, 3 per request, 4 per message), not from the code.
"""

from __future__ import annotations

import base64
import json
import math
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin.standin import sdk_http_module
from otel_margin.standin import (
    SCENARIOS,
    StandIn,
    StandInServer,
    anthropic_client,
    in_process_transport,
    openai_client,
)
from otel_margin.standin.__main__ import main as standin_main
from otel_margin.standin.tokens import count_text, words

# "You are terse." = 4 tokens, "Hello, world!" = 4 tokens: 3 + (4 + 4) + (4 + 4) = 19.
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello, world!"}]
CHAT_PROMPT_TOKENS = 19
HI = [{"role": "user", "content": "hi"}]  # 3 + (4 + 1) = 8 input tokens
DEFAULT_OUTPUT = 20
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}]


def scenario(*names: str, output_tokens: int | None = None) -> dict[str, str]:
    headers = {"x-standin-scenario": ",".join(names)} if names else {}
    if output_tokens is not None:
        headers["x-standin-output-tokens"] = str(output_tokens)
    return headers


@pytest.fixture(params=["http", "in-process"])
def target(request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh stand-in per test (so prompt-cache state never leaks), reached either way."""
    if request.param == "in-process":
        yield in_process_transport()
    else:
        with StandInServer() as server:
            yield server


# --- OpenAI chat completions ---------------------------------------------------------------------


def test_chat_completion_has_openai_shape_and_exact_usage(target):
    client = openai_client(target)
    response = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert response.object == "chat.completion"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.id.startswith("chatcmpl-")
    assert response.system_fingerprint.startswith("fp_")
    assert response.service_tier == "default"
    assert response._request_id.startswith("req_")
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert len(choice.message.content.split()) == DEFAULT_OUTPUT
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (19, 20, 39)
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_model_without_snapshot_is_echoed(target):
    response = openai_client(target).chat.completions.create(model="my-finetune", messages=CHAT)
    assert response.model == "my-finetune"
    assert openai_client(target).chat.completions.create(model="gpt-4o", messages=CHAT).model == "gpt-4o-2024-08-06"


async def test_async_chat_completion_and_stream(target):
    client = openai_client(target, async_=True)
    response = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == response.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == DEFAULT_OUTPUT
    await client.close()


def test_chat_stream_with_include_usage_adds_one_usage_chunk_with_empty_choices(target):
    client = openai_client(target)
    reference = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices[0].message.content
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    *body, last = chunks
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (19, 20, 39)
    assert all(c.usage is None and "usage" in c.model_fields_set for c in body)
    assert body[0].choices[0].delta.role == "assistant"
    assert body[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in body) == reference
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini-2024-07-18" for c in chunks)
    assert target.requests[-1].json["stream_options"] == {"include_usage": True}


def test_chat_stream_without_include_usage_carries_no_usage(target):
    chunks = list(openai_client(target).chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True))
    assert all("usage" not in c.model_fields_set for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "stream_options" not in target.requests[-1].json


def test_forced_output_tokens_set_usage_and_text_length(target):
    response = openai_client(target).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, extra_headers=scenario(output_tokens=57)
    )
    assert response.usage.completion_tokens == 57
    assert len(response.choices[0].message.content.split()) == 57


def test_cached_and_reasoning_scenarios_fill_usage_details(target):
    response = openai_client(target).chat.completions.create(
        model="o4-mini", messages=CHAT, extra_headers=scenario("cached", "reasoning", output_tokens=11)
    )
    usage = response.usage
    assert usage.prompt_tokens == CHAT_PROMPT_TOKENS
    assert usage.prompt_tokens_details.cached_tokens == CHAT_PROMPT_TOKENS // 2
    assert usage.completion_tokens == 11
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert len(response.choices[0].message.content.split()) == 6


def test_chat_tool_calls_non_stream_and_streamed_deltas(target):
    client = openai_client(target)
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, tools=CHAT_TOOLS, extra_headers=scenario("tools")
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "standin", "unit": "celsius"}
    # The tool definition counts as input: its strings and enum values are tokens too.
    assert response.usage.prompt_tokens > CHAT_PROMPT_TOKENS
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=CHAT, tools=CHAT_TOOLS, extra_headers=scenario("tools")
    ) as stream:
        final = stream.get_final_completion()
    streamed_call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert json.loads(streamed_call.function.arguments) == json.loads(call.function.arguments)


def test_tools_scenario_without_tools_answers_with_text(target):
    response = openai_client(target).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("tools")
    )
    assert response.choices[0].finish_reason == "stop" and response.choices[0].message.tool_calls is None


def test_n_choices_non_stream_and_stream(target):
    client = openai_client(target)
    response = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=3)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len({c.message.content for c in response.choices}) == 3
    assert response.usage.completion_tokens == 3 * DEFAULT_OUTPUT
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=3, stream=True))
    texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i) for i in range(3)}
    assert [texts[i] for i in range(3)] == [c.message.content for c in response.choices]


def test_max_tokens_caps_output_with_finish_reason_length(target):
    response = openai_client(target).chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5


def test_no_usage_and_null_usage_fields(target):
    client = openai_client(target)
    assert client.chat.completions.create(model="m", messages=CHAT, extra_headers=scenario("no-usage")).usage is None
    chunks = list(
        client.chat.completions.create(
            model="m", messages=CHAT, stream=True, stream_options={"include_usage": True},
            extra_headers=scenario("no-usage"),
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    usage = client.chat.completions.create(model="m", messages=CHAT, extra_headers=scenario("null-usage-fields")).usage
    assert usage.prompt_tokens == CHAT_PROMPT_TOKENS
    assert usage.prompt_tokens_details is None and usage.completion_tokens_details is None


def test_malformed_chat_completion_lacks_choices(target):
    response = openai_client(target).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("malformed")
    )
    assert "choices" not in response.model_fields_set
    assert response.usage.prompt_tokens == CHAT_PROMPT_TOKENS


def cut_stream_errors(sdk) -> tuple[type[BaseException], ...]:
    """What a caller of ``sdk`` may see when the connection is cut mid-stream, on every supported version.

    Newer releases wrap the HTTP library's error in the SDK's ``APIConnectionError`` (openai 3.x,
    anthropic 2.17+); older ones let it through. Callers handle either, so the tests accept either
    rather than pin one release's wrapping.
    """
    return (sdk.APIConnectionError, sdk_http_module(sdk.__name__).RemoteProtocolError)


CUT_STREAM_ERRORS = cut_stream_errors(openai)


def test_cut_stream_surfaces_as_connection_error_after_partial_chunks(target):
    client = openai_client(target)
    seen = []
    with pytest.raises(CUT_STREAM_ERRORS):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True},
            extra_headers=scenario("cut-stream"),
        ):
            seen.append(chunk)
    assert 0 < len(seen) < DEFAULT_OUTPUT
    assert all(c.choices and c.choices[0].finish_reason is None for c in seen)
    with pytest.raises(CUT_STREAM_ERRORS):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("cut-stream"))


async def test_async_cut_stream_surfaces_the_same_way(target):
    stream = await openai_client(target, async_=True).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True, extra_headers=scenario("cut-stream")
    )
    seen = []
    with pytest.raises(CUT_STREAM_ERRORS):
        async for chunk in stream:
            seen.append(chunk)
    assert 0 < len(seen) < DEFAULT_OUTPUT


def test_slow_stream_still_completes(target):
    chunks = list(
        openai_client(target).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, stream=True, extra_headers=scenario("slow", output_tokens=5)
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks).count(" ") == 4


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "openai_error", "anthropic_error", "anthropic_type"),
    [
        ("error-429", openai.RateLimitError, anthropic.RateLimitError, "rate_limit_error"),
        ("error-500", openai.InternalServerError, anthropic.InternalServerError, "api_error"),
        ("error-400", openai.BadRequestError, anthropic.BadRequestError, "invalid_request_error"),
        ("error-529", openai.InternalServerError, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_scenarios_map_to_sdk_exceptions(target, name, openai_error, anthropic_error, anthropic_type):
    with pytest.raises(openai_error) as raised:
        openai_client(target).chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers=scenario(name))
    assert set(raised.value.body) == {"message", "type", "param", "code"}
    assert raised.value.request_id.startswith("req_")
    with pytest.raises(anthropic_error) as raised_a:
        anthropic_client(target).messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=CHAT[1:], extra_headers=scenario(name)
        )
    assert raised_a.value.body["type"] == "error"
    assert raised_a.value.body["error"]["type"] == anthropic_type
    assert raised_a.value.request_id.startswith("req_")


def test_rate_limit_code_and_fast_retry(target):
    client = openai_client(target, max_retries=1)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("error-429"))
    assert raised.value.code == "rate_limit_exceeded"
    assert len(target.requests) == 2  # the SDK retried once, honouring retry-after-ms


def test_bad_control_headers_and_bad_bodies_are_named_400s(target):
    client = openai_client(target)
    with pytest.raises(openai.BadRequestError, match="'sloww'"):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("sloww"))
    with pytest.raises(openai.BadRequestError, match="x-standin-output-tokens"):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-standin-output-tokens": "lots"})
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        anthropic_client(target).post("/v1/messages", body={"model": "claude-haiku-4-5", "messages": CHAT[1:]},
                                      cast_to=anthropic.types.Message)
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/nothing\)"):
        client.post("/nothing", body={}, cast_to=openai.types.chat.ChatCompletion)
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic_client(target).post("/v1/nothing", body={}, cast_to=anthropic.types.Message)
    assert raised.value.body["error"] == {"type": "not_found_error", "message": "Not Found"}


def test_in_process_transport_serves_a_plain_http_client():
    transport = in_process_transport(http_module=httpx2)
    with httpx2.Client(transport=transport, base_url="http://anywhere") as http:
        reply = http.post("/v1/messages/count_tokens", json={"model": "claude-haiku-4-5", "messages": HI})
    assert reply.status_code == 200 and reply.json() == {"input_tokens": 8}
    assert reply.headers["request-id"].startswith("req_")
    assert transport.requests[0].path == "/v1/messages/count_tokens"


# --- OpenAI Responses API -------------------------------------------------------------------------


def test_responses_non_stream_usage_and_shape(target):
    response = openai_client(target).responses.create(model="gpt-4o-mini", input="hello there")
    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert len(response.output_text.split()) == DEFAULT_OUTPUT
    usage = response.usage
    # 3 + (4 + 2) = 9
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 20, 29)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_raw_stream_events(target):
    events = list(openai_client(target).responses.create(model="gpt-4o-mini", input="hello there", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == DEFAULT_OUTPUT
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.usage is None
    assert events[-1].response.usage.output_tokens == DEFAULT_OUTPUT


async def test_responses_stream_helper_sync_and_async(target):
    client = openai_client(target)
    with client.responses.stream(model="gpt-4o", input="hello there", instructions="Be brief.") as stream:
        final = stream.get_final_response()
    # 3 + (4 + 2) + "Be brief." (3) = 12
    assert final.usage.input_tokens == 12 and final.usage.output_tokens == DEFAULT_OUTPUT
    async with openai_client(target, async_=True).responses.stream(
        model="gpt-4o", input="hello there", instructions="Be brief."
    ) as async_stream:
        async_final = await async_stream.get_final_response()
    assert async_final.output_text == final.output_text


def test_responses_reasoning_cached_and_tools(target):
    client = openai_client(target)
    response = client.responses.create(
        model="o4-mini", input="hello there", extra_headers=scenario("reasoning", "cached", output_tokens=10)
    )
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.usage.output_tokens_details.reasoning_tokens == 5
    assert response.usage.input_tokens_details.cached_tokens == 4
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}]
    with client.responses.stream(
        model="gpt-4o", input="weather?", tools=tools, extra_headers=scenario("tools")
    ) as stream:
        final = stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "standin", "unit": "celsius"}


def test_responses_max_output_tokens_is_incomplete(target):
    client = openai_client(target)
    response = client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=4)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 4
    events = list(client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=4, stream=True))
    assert events[-1].type == "response.incomplete"


# --- OpenAI embeddings ----------------------------------------------------------------------------


async def test_embeddings_float_and_base64_agree(target):
    client = openai_client(target)
    as_float = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], encoding_format="float")
    default = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert target.requests[-1].json["encoding_format"] == "base64"  # the SDK asks for base64 by default
    assert [d.embedding for d in default.data] == [d.embedding for d in as_float.data]
    assert len(as_float.data[0].embedding) == 1536
    assert math.isclose(sum(v * v for v in as_float.data[0].embedding), 1.0, rel_tol=1e-5)
    assert (as_float.usage.prompt_tokens, as_float.usage.total_tokens) == (3, 3)
    small = await openai_client(target, async_=True).embeddings.create(
        model="text-embedding-3-large", input="x", dimensions=8
    )
    assert len(small.data[0].embedding) == 8


def test_embeddings_base64_body_is_float32_little_endian(target):
    raw = openai_client(target).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="a", encoding_format="base64", dimensions=4
    )
    encoded = json.loads(raw.http_response.text)["data"][0]["embedding"]
    assert len(struct.unpack("<4f", base64.b64decode(encoded))) == 4


# --- Anthropic messages ---------------------------------------------------------------------------


def test_anthropic_message_shape_and_usage(target):
    message = anthropic_client(target).messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HI)
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-haiku-4-5-20251001"
    assert message.id.startswith("msg_01") and message._request_id.startswith("req_")
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    assert len(message.content[0].text.split()) == DEFAULT_OUTPUT
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (8, DEFAULT_OUTPUT)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 0)


async def test_anthropic_stream_final_output_is_message_delta_count(target):
    client = anthropic_client(target)
    raw = list(client.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=HI, stream=True,
                                      extra_headers=scenario(output_tokens=33)))
    kinds = [e.type for e in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert raw[0].message.usage.output_tokens == 1
    assert raw[-2].usage.output_tokens == 33
    async with anthropic_client(target, async_=True).messages.stream(
        model="claude-haiku-4-5", max_tokens=200, messages=HI, extra_headers=scenario(output_tokens=33)
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 33 and final.usage.input_tokens == 8
    assert len(final.content[0].text.split()) == 33


def test_anthropic_tool_use_non_stream_and_stream(target):
    client = anthropic_client(target)
    tools = [{"name": "get_weather", "description": "Weather.", "input_schema": WEATHER_TOOL_SCHEMA}]
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=HI, tools=tools, extra_headers=scenario("tools")
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_01")
    assert block.input == {"city": "standin", "unit": "celsius"}
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=HI, tools=tools, extra_headers=scenario("tools")
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == block.input and final.stop_reason == "tool_use"


def test_anthropic_thinking_blocks(target):
    client = anthropic_client(target)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=2048, messages=HI, thinking=thinking, extra_headers=scenario(output_tokens=12)
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert len(message.content[0].thinking.split()) == 6 and message.content[0].signature
    assert message.usage.output_tokens == 12
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=2048, messages=HI, thinking=thinking,
        extra_headers=scenario(output_tokens=12),
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == message.content[0].thinking
    assert final.content[0].signature == message.content[0].signature
    scenario_message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=HI, extra_headers=scenario("reasoning")
    )
    assert scenario_message.content[0].type == "thinking"


def test_anthropic_prompt_caching_writes_then_reads(target):
    client = anthropic_client(target)
    # "Policy: answer in one line." = 7 tokens; the message "hi" = 4 + 1.
    system = [{"type": "text", "text": "Policy: answer in one line.", "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system, messages=HI)
    second = client.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system, messages=HI)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (7, 0)
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 7
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, 7)
    # input_tokens excludes the cached prefix: 3 + 7 + 5 = 15 in all.
    assert first.usage.input_tokens == second.usage.input_tokens == 15 - 7
    counted = client.messages.count_tokens(model="claude-haiku-4-5", system=system, messages=HI)
    assert counted.input_tokens == 15
    # A longer prefix reads the cached part and writes only the new part (here with a 1h TTL).
    longer = HI + [
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
    ]
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, system=system, messages=longer) as stream:
        third = stream.get_final_message()
    # prefix up to "more": 7 + 5 + (4 + 1) + (4 + 1) = 22
    assert third.usage.cache_read_input_tokens == 7
    assert third.usage.cache_creation_input_tokens == 15
    assert third.usage.cache_creation.ephemeral_1h_input_tokens == 15
    assert third.usage.input_tokens == 3


def test_prompt_cache_is_per_instance():
    system = [{"type": "text", "text": "Same prefix.", "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        client = anthropic_client(in_process_transport())
        usage = client.messages.create(model="claude-haiku-4-5", max_tokens=5, system=system, messages=HI).usage
        assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 3


def test_anthropic_usage_scenarios_and_malformed(target):
    client = anthropic_client(target)
    nulls = client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=HI, extra_headers=scenario("null-usage-fields")
    )
    assert nulls.usage.input_tokens == 8 and nulls.usage.cache_read_input_tokens is None
    missing = client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=HI, extra_headers=scenario("no-usage")
    )
    assert "usage" not in missing.model_fields_set
    malformed = client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=HI, extra_headers=scenario("malformed")
    )
    assert "content" not in malformed.model_fields_set and malformed.usage.input_tokens == 8


def test_anthropic_cut_stream_raises_mid_stream(target):
    client = anthropic_client(target)
    seen = []
    with pytest.raises(cut_stream_errors(anthropic)):
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=50, messages=HI, extra_headers=scenario("cut-stream")
        ) as stream:
            for event in stream:
                seen.append(event.type)
    assert "message_start" in seen and "message_stop" not in seen and "message_delta" not in seen


# --- the server and the core ----------------------------------------------------------------------


def test_server_records_requests_and_releases_its_port():
    with StandInServer() as server:
        openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers=scenario("cached"))
        method, path, headers, body = server.requests[0]
        assert (method, path) == ("POST", "/v1/chat/completions")
        assert headers["x-standin-scenario"] == "cached" and body["messages"] == CHAT
        port = server.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_streams_chunked_events_on_the_wire():
    with StandInServer() as server, httpx2.Client() as http:
        with http.stream("POST", server.anthropic_base_url + "/v1/messages",
                         json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": HI, "stream": True}) as reply:
            assert reply.headers["transfer-encoding"] == "chunked"
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert reply.headers["request-id"].startswith("req_")
            text = reply.read().decode()
    assert "event: ping" in text and text.rstrip().endswith('data: {"type":"message_stop"}')


def test_same_request_gives_same_response_on_fresh_instances():
    body = json.dumps({"model": "gpt-4o-mini", "messages": CHAT, "stream": True}).encode()
    replies = [StandIn(clock=lambda: 1_700_000_000).handle("POST", "/v1/chat/completions", {}, body) for _ in range(2)]
    assert replies[0] == replies[1]
    standin = StandIn()
    first, second = (standin.handle("POST", "/v1/chat/completions", {}, body.replace(b"true", b"false")) for _ in range(2))
    assert first.json["usage"] == second.json["usage"] and first.json["id"] != second.json["id"]
    assert first.json["choices"] == second.json["choices"]


def test_slow_pacing_is_bounded():
    body = json.dumps({"model": "m", "max_tokens": 99999, "messages": HI, "stream": True}).encode()
    reply = StandIn().handle("POST", "/v1/messages", {"x-standin-scenario": "slow", "x-standin-output-tokens": "5000"}, body)
    assert reply.chunk_delay > 0 and reply.first_byte_delay > 0
    assert reply.first_byte_delay + reply.chunk_delay * len(reply.events) <= 1.1


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_paths = st.sampled_from(
    ["/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens", "/x"]
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(max_size=8) | _json, "messages": st.lists(_json, max_size=3) | _json,
        "input": _json, "max_tokens": st.integers(-2, 50) | _json, "stream": st.booleans(), "n": _json,
        "tools": _json, "system": _json, "stream_options": _json, "dimensions": st.integers(-1, 9) | _json,
        "max_output_tokens": _json, "thinking": _json, "tool_choice": _json, "encoding_format": _json,
    },
)
_scenarios = st.lists(st.sampled_from(sorted(SCENARIOS - {"slow"})), max_size=3).map(",".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=_paths, fields=_fields, names=_scenarios, raw=st.none() | st.binary(max_size=40))
def test_handle_never_fails_and_errors_keep_the_provider_shape(path, fields, names, raw):
    body = raw if raw is not None else json.dumps(fields).encode()
    reply = StandIn().handle("POST", path, {"x-standin-scenario": names}, body)
    assert reply.status in {200, 400, 404, 429, 500, 503, 529}
    if reply.status == 500:
        assert "internal error" not in reply.json.get("error", {}).get("message", "")
    if reply.status != 200:
        payload = json.loads(reply.body)
        if path.startswith("/v1/messages"):
            assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
        else:
            assert set(payload["error"]) == {"message", "type", "param", "code"}
    elif reply.events is not None:
        assert all(event.endswith(b"\n\n") for event in reply.events)


@given(seed=st.text(max_size=10), n=st.integers(0, 300))
def test_generated_text_has_exactly_n_tokens(seed, n):
    assert count_text(" ".join(words(seed, n))) == n


@given(text=st.text(max_size=60))
def test_token_count_is_additive_over_whitespace(text):
    assert count_text(text + " " + text) == 2 * count_text(text)


# --- the command line -----------------------------------------------------------------------------


def test_main_help(capsys):
    with pytest.raises(SystemExit) as exited:
        standin_main(["--help"])
    assert exited.value.code == 0 and "--port" in capsys.readouterr().out


def test_python_dash_m_serves_until_stopped():
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_margin.standin", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", line).group(0)
        response = openai_client(url).chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        assert response.usage.prompt_tokens == CHAT_PROMPT_TOKENS
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdout.close()
