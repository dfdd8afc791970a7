"""Opt-in message content: real SDK calls against the stand-in, the env var on and off, the cap.

Expected messages are built here from what the test sent and from the SDK's own parsed reply
(or the chunks the caller received), never from otel-margin's code; every captured value is
checked to be JSON within the cap.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

import anthropic
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import instrumentation
from otel_margin import content
from otel_margin.call import Attribution, LLMCall
from otel_margin.content.capped import MARKER, encode, plain
from otel_margin.standin import anthropic_client, openai_client

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_BYTES = "OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES"
INPUT, OUTPUT, SYSTEM = "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"
TRUNCATED = "margin.content.truncated"
CONTENT_KEYS = (INPUT, OUTPUT, SYSTEM, TRUNCATED)
SCENARIO = "x-standin-scenario"
TOOLS = {SCENARIO: "tools"}
CLAUDE = "claude-3-5-haiku-latest"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                       "required": ["city"]}},
}
ANTHROPIC_WEATHER = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """The process environment with ``values`` set (``None``: unset) for the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def instrumented_with(otel: Any, **values: str | None) -> Iterator[None]:
    """Both instrumentors on, their settings read with ``values`` in the environment."""
    with environment(**values), instrumentation(otel):
        yield


@pytest.fixture
def capturing(otel: Any) -> Iterator[None]:
    """Capture on (``true``), default cap, for the test."""
    with instrumented_with(otel, **{CAPTURE: "true", MAX_BYTES: None}):
        yield


@pytest.fixture
def oai(standin_server: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture
def ant(standin_server: Any) -> anthropic.Anthropic:
    return anthropic_client(standin_server)


def captured(span: Any, key: str, cap: int = content.DEFAULT_MAX_BYTES) -> Any:
    """The attribute ``key`` of ``span`` parsed, after checking it is JSON text within ``cap`` bytes."""
    value = span.attributes[key]
    assert isinstance(value, str)
    assert len(value.encode("utf-8")) <= cap
    return json.loads(value)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "content": value}


# --- off by default, and the setting's values ------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "false", "NO_CONTENT", "EVENT_ONLY", "maybe"])
def test_no_content_on_spans_unless_turned_on(otel, sink, oai, ant, value) -> None:
    with instrumented_with(otel, **{CAPTURE: value}):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "secret plan"}])
        list(oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                         stream=True))
        ant.messages.create(model=CLAUDE, max_tokens=20, system="secret system",
                            messages=[{"role": "user", "content": "secret"}])
        spans = sink.llm_spans()
    assert len(spans) == 3
    for span in spans:
        assert not set(CONTENT_KEYS) & set(span.attributes), span.attributes


@pytest.mark.parametrize("value, on", [
    ("true", True), ("TRUE", True), ("1", True), ("SPAN_ONLY", True), ("span_and_event", True),
    ("false", False), ("no_content", False), ("", False),
])
def test_setting_values(value, on) -> None:
    assert content.capture_enabled({CAPTURE: value}) is on


@pytest.mark.parametrize("value, says", [("EVENT_ONLY", "spans only"), ("sometimes", "is not one of")])
def test_setting_values_that_record_nothing_say_why(caplog, monkeypatch, value, says) -> None:
    monkeypatch.setattr(content, "_warned", set())  # said once per process: forget earlier tests'
    caplog.set_level(logging.WARNING, logger="otel_margin.content")
    assert content.capture_enabled({CAPTURE: value}) is False
    message = " ".join(r.getMessage() for r in caplog.records)
    assert CAPTURE in message and repr(value) in message and says in message and "SPAN_ONLY" in message


@pytest.mark.parametrize("value, cap", [(None, content.DEFAULT_MAX_BYTES), ("4096", 4096), (" 64 ", 64),
                                        ("63", content.DEFAULT_MAX_BYTES), ("ten", content.DEFAULT_MAX_BYTES),
                                        ("-5", content.DEFAULT_MAX_BYTES)])
def test_cap_setting(caplog, monkeypatch, value, cap) -> None:
    monkeypatch.setattr(content, "_warned", set())
    caplog.set_level(logging.WARNING, logger="otel_margin.content")
    environ = {} if value is None else {MAX_BYTES: value}
    assert content.max_bytes(environ) == cap
    if value is not None and cap == content.DEFAULT_MAX_BYTES:
        message = " ".join(r.getMessage() for r in caplog.records)
        assert MAX_BYTES in message and repr(value) in message and str(content.DEFAULT_MAX_BYTES) in message


# --- OpenAI Chat Completions -----------------------------------------------------------------


def test_chat_tool_round_trip(capturing, sink, oai) -> None:
    history: list[Any] = [{"role": "system", "content": "Answer briefly."},
                          {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                                       {"type": "image_url",
                                                        "image_url": {"url": "https://example.test/p.png"}}]}]
    first = oai.chat.completions.create(model="gpt-4o-mini", messages=history, tools=[WEATHER], extra_headers=TOOLS)
    span = sink.one_llm_span()
    call = first.choices[0].message.tool_calls[0]
    assert captured(span, INPUT) == [
        {"role": "system", "parts": [text("Answer briefly.")]},
        {"role": "user", "parts": [text("Weather in Paris?"),
                                   {"type": "uri", "modality": "image", "uri": "https://example.test/p.png"}]},
    ]
    assert captured(span, OUTPUT) == [{
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": call.id, "name": call.function.name,
                   "arguments": json.loads(call.function.arguments)}],
        "finish_reason": first.choices[0].finish_reason,
    }]
    assert SYSTEM not in span.attributes  # chat's system message is part of the history
    assert TRUNCATED not in span.attributes

    # The reply (the SDK's own model) and the tool's result go back as history.
    history += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "rainy, 57°F"}]
    sink.clear()
    second = oai.chat.completions.create(model="gpt-4o-mini", messages=history)
    span = sink.one_llm_span()
    inputs = captured(span, INPUT)
    assert inputs[2:] == [
        {"role": "assistant", "parts": [{"type": "tool_call", "id": call.id, "name": "get_weather",
                                         "arguments": json.loads(call.function.arguments)}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": call.id, "response": "rainy, 57°F"}]},
    ]
    assert captured(span, OUTPUT) == [{"role": "assistant", "parts": [text(second.choices[0].message.content)],
                                       "finish_reason": second.choices[0].finish_reason}]


def test_input_is_what_was_sent_though_the_caller_appends_to_its_list(capturing, sink, oai) -> None:
    history: list[Any] = [{"role": "user", "content": "first question"}]
    for _ in range(3):
        reply = oai.chat.completions.create(model="gpt-4o-mini", messages=history)
        # Before the finisher wrote the span: the common chat loop grows the same list.
        history += [reply.choices[0].message, {"role": "user", "content": "and then?"}]
    spans = sorted(sink.llm_spans(), key=lambda s: s.start_time)
    assert [len(captured(s, INPUT)) for s in spans] == [1, 3, 5]


def test_chat_choices_each_one_output_message(capturing, sink, oai) -> None:
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=3)
    assert captured(sink.one_llm_span(), OUTPUT) == [
        {"role": "assistant", "parts": [text(c.message.content)], "finish_reason": c.finish_reason}
        for c in reply.choices
    ]


@pytest.mark.parametrize("include_usage", [None, True, False])
def test_chat_stream_output_is_what_the_caller_received(capturing, sink, oai, include_usage) -> None:
    extra = {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                              stream=True, n=2, **extra))
    expected = []
    for index in range(2):
        pieces = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        expected.append({"role": "assistant", "parts": [text("".join(p.delta.content or "" for p in pieces))],
                         "finish_reason": [p.finish_reason for p in pieces if p.finish_reason][0]})
    assert captured(sink.one_llm_span(), OUTPUT) == expected
    assert captured(sink.one_llm_span(), INPUT) == [{"role": "user", "parts": [text("hi")]}]


def test_chat_stream_tool_call_assembled(capturing, sink, oai) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Paris?"}],
                                              tools=[WEATHER], stream=True, extra_headers=TOOLS))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) > 2  # the arguments came in pieces
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert captured(sink.one_llm_span(), OUTPUT) == [{
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": deltas[0].id, "name": deltas[0].function.name,
                   "arguments": json.loads(arguments)}],
        "finish_reason": "tool_calls",
    }]


async def test_async_chat_stream(capturing, sink, standin_server) -> None:
    client = openai_client(standin_server, async_=True)
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "async hi"}])
    received = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    span = sink.one_llm_span()
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("async hi")]}]
    assert captured(span, OUTPUT)[0]["parts"] == [text(received)]


def test_cut_stream_keeps_what_arrived_marked_error(capturing, sink, oai) -> None:
    received = []
    with pytest.raises(Exception):
        for chunk in oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, extra_headers={SCENARIO: "cut-stream"}):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received)
    assert captured(sink.one_llm_span(), OUTPUT) == [
        {"role": "assistant", "parts": [text("".join(received))], "finish_reason": "error"}]


def test_raw_and_streaming_responses(capturing, sink, oai) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                        messages=[{"role": "user", "content": "raw"}])
    reply = raw.parse()
    assert captured(sink.one_llm_span(), OUTPUT)[0]["parts"] == [text(reply.choices[0].message.content)]
    sink.clear()
    with oai.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "streamed raw"}], stream=True) as response:
        received = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    span = sink.one_llm_span()
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("streamed raw")]}]
    assert captured(span, OUTPUT)[0]["parts"] == [text(received)]


def test_with_a_record_hook(capturing, sink, oai, records) -> None:
    # Record hooks run before the call returns; the span, with its content, is still written after.
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "recorded"}])
    span = sink.one_llm_span()
    assert len(records.calls) == 1
    assert captured(span, OUTPUT)[0]["parts"] == [text(reply.choices[0].message.content)]


def test_failed_call_records_its_input_and_no_output(capturing, sink, oai) -> None:
    with pytest.raises(openai.InternalServerError):
        oai.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={SCENARIO: "error-500"})
    span = sink.one_llm_span()
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("hi")]}]
    assert OUTPUT not in span.attributes


def test_embeddings_carry_no_content(capturing, sink, oai, records) -> None:
    oai.embeddings.create(model="text-embedding-3-small", input=["secret"] * 100)
    assert not set(CONTENT_KEYS) & set(sink.one_llm_span().attributes)
    assert not records.calls[0].notes  # and their (long) input lists are not copied on the caller's thread


# --- OpenAI Responses ------------------------------------------------------------------------


def test_responses_instructions_input_and_output(capturing, sink, oai) -> None:
    reply = oai.responses.create(model="gpt-4o-mini", instructions="Be terse.",
                                 input=[{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}])
    span = sink.one_llm_span()
    assert captured(span, SYSTEM) == [text("Be terse.")]
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("hello")]}]
    assert captured(span, OUTPUT) == [{"role": "assistant", "parts": [text(reply.output_text)],
                                       "finish_reason": "stop"}]


def test_responses_stream_function_call(capturing, sink, oai) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    events = list(oai.responses.create(model="gpt-4o-mini", input="Paris?", tools=[tool], stream=True,
                                       extra_headers=TOOLS))
    final = [e.response for e in events if e.type == "response.completed"][0]
    call = [item for item in final.output if item.type == "function_call"][0]
    span = sink.one_llm_span()
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("Paris?")]}]
    assert captured(span, OUTPUT) == [{
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": call.call_id, "name": call.name, "arguments": json.loads(call.arguments)}],
        "finish_reason": "tool_call",
    }]


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_system_is_system_instructions(capturing, sink, ant) -> None:
    reply = ant.messages.create(
        model=CLAUDE, max_tokens=50,
        system=[{"type": "text", "text": "You translate."}, {"type": "text", "text": "To French."}],
        messages=[{"role": "user", "content": "hello"}],
    )
    span = sink.one_llm_span()
    assert captured(span, SYSTEM) == [text("You translate."), text("To French.")]
    assert captured(span, INPUT) == [{"role": "user", "parts": [text("hello")]}]
    assert captured(span, OUTPUT) == [{"role": "assistant", "parts": [text(reply.content[0].text)],
                                       "finish_reason": reply.stop_reason}]


def test_anthropic_tool_round_trip(capturing, sink, ant) -> None:
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = ant.messages.create(model=CLAUDE, max_tokens=50, system="Use tools.", tools=[ANTHROPIC_WEATHER],
                                messages=history, extra_headers=TOOLS)
    use = [b for b in first.content if b.type == "tool_use"][0]
    assert captured(sink.one_llm_span(), OUTPUT) == [{
        "role": "assistant", "parts": [{"type": "tool_call", "id": use.id, "name": use.name, "arguments": use.input}],
        "finish_reason": "tool_use",
    }]
    history += [{"role": "assistant", "content": first.content},  # the SDK's own blocks
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                              "content": [{"type": "text", "text": "rainy"}]}]}]
    sink.clear()
    ant.messages.create(model=CLAUDE, max_tokens=50, messages=history)
    assert captured(sink.one_llm_span(), INPUT)[1:] == [
        {"role": "assistant", "parts": [{"type": "tool_call", "id": use.id, "name": use.name, "arguments": use.input}]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": use.id, "response": "rainy"}]},
    ]


def test_anthropic_stream_assembled(capturing, sink, ant) -> None:
    events = list(ant.messages.create(model=CLAUDE, max_tokens=50, stream=True, tools=[ANTHROPIC_WEATHER],
                                      messages=[{"role": "user", "content": "Paris?"}],
                                      extra_headers={SCENARIO: "tools,reasoning"},
                                      thinking={"type": "enabled", "budget_tokens": 1024}))
    starts = {e.index: e.content_block for e in events if e.type == "content_block_start"}
    pieces: dict[int, str] = {}
    for e in events:
        if e.type == "content_block_delta":
            piece = getattr(e.delta, "text", None) or getattr(e.delta, "thinking", None) or \
                getattr(e.delta, "partial_json", None) or ""
            pieces[e.index] = pieces.get(e.index, "") + piece
    expected = []
    for index in sorted(starts):
        block = starts[index]
        if block.type == "thinking":
            expected.append({"type": "reasoning", "content": pieces.get(index, "")})
        elif block.type == "text":
            expected.append(text(pieces.get(index, "")))
        elif block.type == "tool_use":
            expected.append({"type": "tool_call", "id": block.id, "name": block.name,
                             "arguments": json.loads(pieces[index])})
    assert {p["type"] for p in expected} >= {"reasoning", "tool_call"}
    stop = [e.delta.stop_reason for e in events if e.type == "message_delta"][-1]
    assert captured(sink.one_llm_span(), OUTPUT) == [{"role": "assistant", "parts": expected, "finish_reason": stop}]


def test_anthropic_stream_manager(capturing, sink, ant) -> None:
    with ant.messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()
    assert captured(sink.one_llm_span(), OUTPUT) == [
        {"role": "assistant", "parts": [text(final.content[0].text)], "finish_reason": final.stop_reason}]


async def test_async_anthropic_stream(capturing, sink, standin_server) -> None:
    client = anthropic_client(standin_server, async_=True)
    stream = await client.messages.create(model=CLAUDE, max_tokens=50, stream=True, system="async system",
                                          messages=[{"role": "user", "content": "hi"}])
    received = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
    span = sink.one_llm_span()
    assert captured(span, SYSTEM) == [text("async system")]
    assert captured(span, OUTPUT)[0]["parts"] == [text(received)]


# --- the cap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [64, 300, 2048])
def test_cap_cuts_long_content_keeping_json(otel, sink, oai, ant, cap) -> None:
    long = "word " * 2000
    with instrumented_with(otel, **{CAPTURE: "true", MAX_BYTES: str(cap)}):
        oai.chat.completions.create(model="gpt-4o-mini", extra_headers={"x-standin-output-tokens": "900"},
                                    messages=[{"role": "system", "content": "short"},
                                              {"role": "user", "content": long}])
        ant.messages.create(model=CLAUDE, max_tokens=1000, system=long, messages=[{"role": "user", "content": "hi"}],
                            extra_headers={"x-standin-output-tokens": "900"})
        spans = sink.llm_spans()
    assert len(spans) == 2
    for span in spans:
        cut = list(span.attributes[TRUNCATED])
        assert OUTPUT in cut
        for key in cut:
            value = captured(span, key, cap)
            if cap >= 300:  # room for the structure and a cut string
                assert MARKER in json.dumps(value, ensure_ascii=False)
        for key in {INPUT, SYSTEM, OUTPUT} & set(span.attributes) - set(cut):
            captured(span, key, cap)
    openai_span = [s for s in spans if s.attributes["gen_ai.provider.name"] == "openai"][0]
    assert INPUT in openai_span.attributes[TRUNCATED]
    if cap >= 300:
        # The short message is kept whole; the long one is what was cut.
        assert captured(openai_span, INPUT, cap)[0] == {"role": "system", "parts": [text("short")]}
    if cap >= 2048:
        # The cap is used, not wasted: the long message keeps most of it.
        kept = captured(openai_span, INPUT, cap)[1]["parts"][0]["content"]
        assert kept.endswith(MARKER) and long.startswith(kept[: -len(MARKER)]) and len(kept) > cap * 3 // 4


# --- arbitrary content -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
huge = st.tuples(st.text(min_size=1, max_size=8), st.integers(min_value=200, max_value=2000)).map(lambda t: t[0] * t[1])
odd = st.lists(st.sampled_from(["\ud800", "\udfff", "\x00", "\n", '"', "\\", "é", "😀", "語", "a"]),
               max_size=40).map("".join)  # lone surrogates (UTF-8 cannot carry them), escapes, multi-byte
texts = st.text(max_size=300) | odd | huge
tool_calls = st.lists(st.fixed_dictionaries({
    "id": st.text(max_size=20), "type": st.just("function"),
    "function": st.fixed_dictionaries({"name": st.text(max_size=20),
                                       "arguments": json_values.map(json.dumps) | st.text(max_size=100)}),
}), min_size=1, max_size=3)
chat_messages = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "developer"]), "content": texts}),
    st.fixed_dictionaries({"role": st.just("user"),
                           "content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
                                               max_size=3)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | texts, "tool_calls": tool_calls}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.text(max_size=20), "content": texts}),
), min_size=1, max_size=6)
anthropic_blocks = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.text(max_size=20), "name": st.text(max_size=20),
                           "input": st.dictionaries(st.text(max_size=10), json_values, max_size=4)}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.text(max_size=20),
                           "content": texts | st.lists(json_values, max_size=3)}),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),  # a block of any shape
), max_size=4)


def _call(api: str, params: dict[str, Any]) -> LLMCall:
    return LLMCall(provider="test", operation="chat", request_model="m", params=params, attribution=Attribution(),
                   api=api)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=chat_messages, system=st.none() | texts | anthropic_blocks, blocks=anthropic_blocks,
       reply=json_values, cap=st.integers(min_value=content.MIN_MAX_BYTES, max_value=3000))
def test_any_content_gives_json_within_the_cap(messages, system, blocks, reply, cap) -> None:
    cases = [
        _call("chat.completions", {"messages": messages}),
        _call("responses", {"input": messages, "instructions": system}),
        _call("messages", {"messages": [{"role": "user", "content": blocks}], "system": system}),
    ]
    for call in cases:
        content.start(call, cap)
        values = content.span_attributes(call, reply)
        assert INPUT in values
        for key in (INPUT, OUTPUT, SYSTEM):
            if key in values:
                assert len(values[key].encode("utf-8")) <= cap
                assert isinstance(json.loads(values[key]), list)


@settings(max_examples=100, deadline=None)
@given(value=st.lists(json_values | texts, max_size=30), cap=st.integers(min_value=2, max_value=2000))
def test_encode_any_value_within_any_cap(value, cap) -> None:
    data, cut = encode(plain(value), cap)
    assert len(data.encode("utf-8")) <= cap
    decoded = json.loads(data)
    assert isinstance(decoded, list)
    if not cut:
        assert decoded == json.loads(json.dumps(plain(value), ensure_ascii=False).encode("utf-8", "replace"))


def test_too_many_messages_keep_the_first_that_fit() -> None:
    sent = [{"role": "user", "content": f"question {i}"} for i in range(2000)]
    call = _call("chat.completions", {"messages": sent})
    content.start(call, 1024)
    values = content.span_attributes(call, None)
    kept = json.loads(values[INPUT])
    assert len(values[INPUT].encode("utf-8")) <= 1024 and values[TRUNCATED] == [INPUT]
    assert 10 < len(kept) < len(sent)
    assert kept == [{"role": "user", "parts": [text(m["content"])]} for m in sent[: len(kept)]]


def test_plain_survives_cycles_and_odd_values() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    value = plain([cycle, float("nan"), b"\x00\xff", {1: (2, 3)}, {"k": object()}])
    data, _ = encode(value, 10_000)
    assert MARKER in data and json.loads(data)[1:4] == ["nan", "AP8=", {"1": [2, 3]}]


def _utf8(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(messages=chat_messages.filter(_utf8))  # the SDK itself cannot send lone surrogates
def test_any_content_through_the_sdk_reaches_the_caller_unchanged(otel, standin_server, messages) -> None:
    client = openai_client(standin_server)
    with instrumented_with(otel, **{CAPTURE: "true", MAX_BYTES: "512"}):
        otel.clear()
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        spans = otel.llm_spans()
    assert isinstance(reply, openai.types.chat.ChatCompletion) and reply.choices
    assert len(spans) == 1
    for key in (INPUT, OUTPUT):
        captured(spans[0], key, 512)
