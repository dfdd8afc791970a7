"""Malformed provider replies and our own failures never change what the caller gets.

Three layers: the stand-in's malformed scenarios through the real SDKs (compared with the
bare SDK), hypothesis-generated scenario mixes through the real SDKs, and hypothesis-generated
junk fed straight to the endpoint readers. Finally, a failure inside otel-margin itself
(monkeypatched) is swallowed and counted in ``margin.internal.errors``.
"""

from __future__ import annotations

import gc
import json
import logging
from types import SimpleNamespace
from typing import Any

import anthropic
import anthropic.resources.messages.messages
import openai
import openai.resources.embeddings
import openai.resources.chat.completions.completions
import openai.resources.responses.responses
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otel_margin.call import Attribution, LLMCall, Usage
from otel_margin.instrumentation.anthropic.endpoints import Messages, MessagesStream, messages_usage
from otel_margin.instrumentation.openai.endpoints import (
    ChatCompletions,
    Embeddings,
    Responses,
    chat_usage,
    responses_usage,
)
from otel_margin.standin import anthropic_client, openai_client

SCENARIO = "x-standin-scenario"
MESSAGES = [{"role": "user", "content": "Tell me about otters."}]
CHAT = openai.resources.chat.completions.completions.Completions
RESPONSES = openai.resources.responses.responses.Responses
MESSAGES_API = anthropic.resources.messages.messages.Messages

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any, sink: Any) -> None:
    """otel-margin on for this module; spans and metrics cleared before each test."""


@pytest.fixture(scope="module")
def oai(standin_server: Any, instrumented_module: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture(scope="module")
def ant(standin_server: Any, instrumented_module: Any) -> anthropic.Anthropic:
    return anthropic_client(standin_server)


def scrub(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in ("id", "created", "created_at", "completed_at",
                                                                    "item_id", "call_id")}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def outcome(run: Any) -> tuple[str, Any]:
    """What the caller sees: ``("ok", data)`` or ``("raised", (type, message))``; streams are drained."""
    seen: list[Any] = []
    try:
        result = run()
        if isinstance(result, (openai.Stream, anthropic.Stream)):
            for chunk in result:
                seen.append(scrub(chunk))
            return "ok", seen
        return "ok", scrub(result)
    except Exception as error:  # noqa: BLE001 - the point is to compare errors too
        return "raised", (type(error), str(error), seen)


def without_injected_usage(result: tuple[str, Any]) -> tuple[str, Any]:
    """The bare chat stream as our caller sees it: the usage-only chunk we asked for is hidden."""
    def visible(chunks: list[Any]) -> list[Any]:
        return [c for c in chunks if c.get("choices") or c.get("usage") is None]

    if result[0] == "ok":
        return "ok", visible(result[1])
    kind, message, seen = result[1]
    return "raised", (kind, message, visible(seen))


class InternalErrors(int):
    """A count of ``margin.internal.errors`` that names where they happened when it fails an assert."""

    where: list[str]

    def __repr__(self) -> str:
        return f"{int(self)} internal errors in {self.where}"


def internal_errors(sink: Any) -> InternalErrors:
    points = sink.metric_points("margin.internal.errors")
    count = InternalErrors(int(sum(point.value for point in points)))
    count.where = [point.attributes.get("margin.where") for point in points]
    return count


def call_kinds(oai: openai.OpenAI, ant: anthropic.Anthropic, scenario: str, model: str | None = None,
               stream: bool = False) -> dict[str, tuple[Any, Any]]:
    """Per API: (instrumented call, bare call) of the same request."""
    h = {SCENARIO: scenario} if scenario else {}
    chat = {"model": model or "gpt-4o-mini", "messages": MESSAGES, "extra_headers": h}
    responses = {"model": model or "gpt-5", "input": "hi", "extra_headers": h}
    messages = {"model": model or "claude-haiku-4-5", "max_tokens": 50, "messages": MESSAGES, "extra_headers": h}
    if stream:
        # The bare call asks for what ours injects, so both get the same bytes.
        chat.update(stream=True)
        bare_chat = {**chat, "stream_options": {"include_usage": True}}
        responses.update(stream=True)
        messages.update(stream=True)
    else:
        bare_chat = chat
    return {
        "chat": (lambda: oai.chat.completions.create(**chat),
                 lambda: CHAT.create.__wrapped__(oai.chat.completions, **bare_chat)),
        "responses": (lambda: oai.responses.create(**responses),
                      lambda: RESPONSES.create.__wrapped__(oai.responses, **responses)),
        "messages": (lambda: ant.messages.create(**messages),
                     lambda: MESSAGES_API.create.__wrapped__(ant.messages, **messages)),
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("scenario", ["no-usage", "null-usage-fields", "malformed", "no-usage,malformed", "cut-stream",
                                      "unknown-model"])
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
def test_malformed_reply_reaches_caller_unchanged(oai, ant, sink, api, scenario, stream) -> None:
    model = "acme-private-llm-7" if scenario == "unknown-model" else None
    ours, bare = call_kinds(oai, ant, "" if scenario == "unknown-model" else scenario, model, stream)[api]
    expected = outcome(bare)
    if api == "chat" and stream:
        expected = without_injected_usage(expected)
    sink.clear()
    got = outcome(ours)
    gc.collect()
    assert got == expected
    span = sink.one_llm_span()
    a = span.attributes
    assert internal_errors(sink) == 0  # tolerated, not caught as a failure of ours
    if scenario == "unknown-model" and got[0] == "ok":
        assert a["margin.cost.status"] == "unpriced"
        assert "margin.cost.usd" not in a  # never $0
    elif "margin.cost.usd" in a:
        assert a["margin.cost.status"] in ("priced", "estimated")
    if scenario in ("no-usage", "cut-stream") and got[0] == "ok" and "gen_ai.usage.input_tokens" in a:
        assert a["margin.usage.source"] == "estimated"


def test_embeddings_without_usage_and_malformed(oai, sink) -> None:
    response = oai.embeddings.create(model="text-embedding-3-small", input="otters",
                                     extra_headers={SCENARIO: "no-usage"})
    assert response.usage is None
    a = sink.one_llm_span().attributes
    assert a["margin.usage.source"] == "estimated" and a["gen_ai.usage.input_tokens"] > 0
    bare = outcome(lambda: openai.resources.embeddings.Embeddings.create.__wrapped__(
        oai.embeddings, model="text-embedding-3-small", input="otters", extra_headers={SCENARIO: "malformed"}))
    sink.clear()
    got = outcome(lambda: oai.embeddings.create(model="text-embedding-3-small", input="otters",
                                                extra_headers={SCENARIO: "malformed"}))
    assert got == bare
    sink.one_llm_span()
    assert internal_errors(sink) == 0


SCENARIOS = st.lists(st.sampled_from(["tools", "reasoning", "cached", "no-usage", "null-usage-fields", "malformed"]),
                     unique=True, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(api=st.sampled_from(["chat", "responses", "messages"]), scenario=SCENARIOS, stream=st.booleans(),
       tokens=st.integers(min_value=0, max_value=40))
def test_any_scenario_mix_is_transparent(oai, ant, sink, api, scenario, stream, tokens) -> None:
    calls = call_kinds(oai, ant, ",".join(scenario), None, stream)
    ours, bare = calls[api]
    expected = outcome(bare)
    if api == "chat" and stream:
        expected = without_injected_usage(expected)
    sink.clear()
    got = outcome(ours)
    assert got[0] == expected[0]
    if got[0] == "ok":
        assert got == expected
    spans = sink.llm_spans()
    assert len(spans) == 1
    assert internal_errors(sink) == 0


# --- the readers, fed junk directly --------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-5, max_value=10**7), st.floats(),
                    st.text(max_size=8))
junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["usage", "model", "choices", "delta", "type", "message", "content",
                                         "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                                         "cache_read_input_tokens", "cache_creation_input_tokens", "id",
                                         "cache_creation", "ephemeral_1h_input_tokens",
                                         "finish_reason", "stop_reason", "response", "text", "index"]),
                        children, max_size=6).map(lambda d: SimpleNamespace(**d)),
    ),
    max_leaves=12,
)
KINDS = ["message_start", "message_delta", "content_block_delta", "message_stop", "message",
         "response.created", "response.completed", "response.output_text.delta", None]
events = st.builds(lambda kind, rest: SimpleNamespace(**{**vars(rest), "type": kind})
                   if isinstance(rest, SimpleNamespace) else SimpleNamespace(type=kind, usage=rest),
                   st.sampled_from(KINDS), junk)
ENDPOINTS = [ChatCompletions(), Responses(), Embeddings(), Messages(), MessagesStream()]


def new_call(endpoint: Any) -> LLMCall:
    return LLMCall(provider=endpoint.provider, operation=endpoint.operation, request_model="m",
                   params={"model": "m", "stream": True}, attribution=Attribution(), api=endpoint.api, stream=True)


def valid_usage(usage: Usage | None) -> bool:
    if usage is None:
        return True
    values = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
              usage.reasoning_tokens, usage.cache_write_1h_tokens)
    return (all(type(v) is int and v >= 0 for v in values) and usage.cache_read_tokens <= usage.input_tokens
            and usage.cache_write_1h_tokens <= usage.cache_write_tokens)


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, len(ENDPOINTS) - 1), response=junk, chunks=st.lists(st.one_of(junk, events), max_size=8))
def test_readers_never_raise_on_junk(index, response, chunks) -> None:
    endpoint = ENDPOINTS[index]
    call = new_call(endpoint)
    endpoint.read_response(call, response)
    assert valid_usage(call.usage)
    assert isinstance(endpoint.output_text(response), str)
    call = new_call(endpoint)
    call.notes["include_usage_injected"] = True  # as ChatCompletions.prepare notes an injection
    observer = endpoint.stream_observer(call)
    hidden = endpoint.hidden_chunk(call)
    for chunk in chunks:
        assert observer.observe(call, chunk) is None
        assert hidden is None or hidden(chunk) in (True, False)
    if chunks:
        assert observer.read(call, chunks) is None  # the batch reader, with its shortcuts
    observer.finish(call)
    assert valid_usage(call.usage)
    assert isinstance(observer.text(), str)
    assert all(isinstance(r, str) and r for r in call.finish_reasons)


counts = st.one_of(st.none(), st.booleans(), st.integers(min_value=-3, max_value=10**9), st.just("12"), st.just(1.5))


@settings(max_examples=300, deadline=None)
@given(prompt=counts, completion=counts, cached=counts, reasoning=counts, details=st.booleans())
def test_chat_usage_is_exact_or_absent(prompt, completion, cached, reasoning, details) -> None:
    usage = SimpleNamespace(
        prompt_tokens=prompt, completion_tokens=completion,
        prompt_tokens_details=SimpleNamespace(cached_tokens=cached) if details else None,
        completion_tokens_details=SimpleNamespace(reasoning_tokens=reasoning) if details else None,
    )
    result = chat_usage(usage)
    ok = lambda v: type(v) is int and v >= 0  # noqa: E731
    if not (ok(prompt) and ok(completion)):
        assert result is None
        return
    assert result is not None and (result.input_tokens, result.output_tokens) == (prompt, completion)
    want_cached = cached if details and ok(cached) else 0
    assert result.cache_read_tokens == min(want_cached, prompt)
    want_reasoning = reasoning if details and ok(reasoning) else 0
    assert result.reasoning_tokens == min(want_reasoning, completion)
    same = responses_usage(SimpleNamespace(
        input_tokens=prompt, output_tokens=completion,
        input_tokens_details=usage.prompt_tokens_details and SimpleNamespace(cached_tokens=cached),
        output_tokens_details=usage.completion_tokens_details and SimpleNamespace(reasoning_tokens=reasoning),
    ))
    assert same == result


# ``cache_creation``: the SDK's model, the wire dict (where the SDK does not type it), absent, or junk.
cache_creations = st.one_of(
    st.none(), scalars,
    st.builds(lambda h: SimpleNamespace(ephemeral_5m_input_tokens=0, ephemeral_1h_input_tokens=h), counts),
    st.builds(lambda one_hour: {"ephemeral_1h_input_tokens": one_hour}, counts),
)


@settings(max_examples=300, deadline=None)
@given(uncached=counts, output=counts, read=counts, write=counts, creation=cache_creations)
def test_anthropic_usage_adds_cache_to_input(uncached, output, read, write, creation) -> None:
    result = messages_usage(SimpleNamespace(input_tokens=uncached, output_tokens=output, cache_read_input_tokens=read,
                                            cache_creation_input_tokens=write, cache_creation=creation))
    ok = lambda v: type(v) is int and v >= 0  # noqa: E731
    if not (ok(uncached) and ok(output)):
        assert result is None
        return
    r = read if ok(read) else 0
    w = write if ok(write) else 0
    one_hour = creation.get("ephemeral_1h_input_tokens") if isinstance(creation, dict) else getattr(
        creation, "ephemeral_1h_input_tokens", None)
    h = min(one_hour, w) if ok(one_hour) else 0  # part of the writes: never more than their total
    assert result == Usage(input_tokens=uncached + r + w, output_tokens=output, cache_read_tokens=r,
                           cache_write_tokens=w, cache_write_1h_tokens=h)


def test_anthropic_stream_keeps_the_one_hour_split_when_the_delta_repeats_totals() -> None:
    # Newer API versions repeat the input counts in message_delta, but not the TTL split.
    from anthropic.types import RawMessageDeltaEvent, RawMessageStartEvent, RawMessageStopEvent

    usage = {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 900,
             "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 600}}
    start = RawMessageStartEvent.model_validate({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})
    delta = RawMessageDeltaEvent.model_validate({
        "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 12, "output_tokens": 77, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 900}})
    whole = Usage(input_tokens=912, output_tokens=77, cache_write_tokens=900, cache_write_1h_tokens=600)
    for events, expected in [
        ([start, delta, RawMessageStopEvent(type="message_stop")], whole),
        # a stream cut before message_stop keeps the split on its estimated usage
        ([start], Usage(input_tokens=912, output_tokens=1, cache_write_tokens=900, cache_write_1h_tokens=600,
                        source="estimated")),
    ]:
        call = new_call(Messages())
        observer = Messages().stream_observer(call)
        for event in events:
            observer.observe(call, event)
        observer.finish(call)
        assert call.usage == expected


# --- failures inside otel-margin ------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("otel-margin bug (injected by the test)")


def test_catalog_failure_never_reaches_caller_and_is_counted(oai, sink, monkeypatch) -> None:
    bare = CHAT.create.__wrapped__(oai.chat.completions, model="gpt-4o-mini", messages=MESSAGES)
    sink.clear()
    monkeypatch.setattr("otel_margin.pipeline.get_catalog", _boom)
    response = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert scrub(response) == scrub(bare)
    span = sink.one_llm_span()
    assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens  # the rest still recorded
    assert "margin.cost.usd" not in span.attributes
    points = sink.metric_points("margin.internal.errors")
    assert sum(p.value for p in points) == 1
    assert points[0].attributes["margin.where"] == "finish"


def test_a_catalog_that_cannot_be_built_at_instrument_time_leaves_instrumentation_on(monkeypatch, caplog) -> None:
    from otel_margin.pipeline import Settings

    monkeypatch.setattr("otel_margin.pipeline.get_catalog", _boom)
    with caplog.at_level(logging.ERROR, logger="otel_margin.pipeline"):
        settings = Settings.load()  # what each instrumentor runs first; raising here would leave the SDK bare
    assert settings.enabled.is_set()
    assert "price catalog could not be built" in caplog.text and "injected by the test" in caplog.text


@pytest.mark.parametrize("target, where", [
    ("otel_margin.telemetry.Telemetry.start_span", "begin"),
    ("otel_margin.instrumentation.openai.endpoints.ChatCompletions.read_response", "response"),
    ("otel_margin.telemetry.Telemetry.finish", "span"),
    ("otel_margin.instrumentation.openai.endpoints.ChatStreamObserver.observe", "stream"),
])
def test_internal_failures_anywhere_are_swallowed_and_counted(oai, sink, monkeypatch, target, where) -> None:
    monkeypatch.setattr(target, _boom)
    response = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks and chunks[-1].usage is not None
    points = sink.metric_points("margin.internal.errors")
    assert sum(p.value for p in points) >= 1
    assert {p.attributes["margin.where"] for p in points} == {where}


def test_internal_failure_in_anthropic_stream_helper(ant, sink, monkeypatch) -> None:
    monkeypatch.setattr("otel_margin.instrumentation.anthropic.endpoints.MessagesStreamObserver.observe", _boom)
    with ant.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 20
    assert internal_errors(sink) >= 1


wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    st.text(max_size=200),
    st.builds(lambda d, separators: json.dumps(d, separators=separators), st.dictionaries(
        st.sampled_from(["choices", "usage", "model", "id"]), wire_values, max_size=4),
        st.sampled_from([(",", ":"), (", ", ": "), (" , ", " :  ")])),
))
@example(data='{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}')
@example(data='{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}')
@example(data='{"id":"c","usage":{"prompt_tokens":3,"completion_tokens":1}}')  # no choices key at all
def test_chat_event_tap_takes_exactly_what_the_chunk_test_hides(data) -> None:
    """On any event text the tap never raises; it takes an event exactly when the SDK's parsed
    chunk of it would be hidden (usage present, no choices), and rewrites one only to drop the
    ``"usage":null`` that ``include_usage`` adds to every chunk."""
    call = new_call(ChatCompletions())
    call.notes["include_usage_injected"] = True
    tap = ChatCompletions().tap_event(call)
    result = tap(data)
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    expected = type(event) is dict and not event.get("choices") and event.get("usage") is not None
    if type(result) is str:
        assert data.endswith(',"usage":null}') and result == data[: -len(',"usage":null}')] + "}"
        if type(event) is dict:
            assert event["usage"] is None and json.loads(result) == {k: v for k, v in event.items() if k != "usage"}
        return
    assert not data.endswith(',"usage":null}')
    # Taken exactly when the parsed chunk would be hidden: nothing is left for the backstop.
    assert (result is not None) == expected
    if result is not None:
        assert result == event
    # Whatever is taken, the observer reads without raising; usage is exact or absent.
    observer = ChatCompletions().stream_observer(call)
    observer.read(call, [result if result is not None else data])
    assert valid_usage(call.usage)
