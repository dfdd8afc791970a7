"""Stream proxies: the caller sees exactly what it would without us; the span ends exactly once.

"Without us" is the same request through the original, unwrapped SDK method (``__wrapped__``)
against the same stand-in; ids differ per request and are scrubbed before comparing.
"Exactly once" is checked twice: one span, and one ``margin_record`` hook call per stream
(the hook runs when the flow finishes), whatever else the caller does afterwards.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import anthropic
import anthropic.lib.streaming
import anthropic.resources.messages.messages
import openai
import openai.resources.chat.completions.completions
import openai.resources.responses.responses
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin.standin import anthropic_client, openai_client

SCENARIO = "x-standin-scenario"
MESSAGES = [{"role": "user", "content": "Write a short note about the weather today."}]
CHAT = openai.resources.chat.completions.completions.Completions
ACHAT = openai.resources.chat.completions.completions.AsyncCompletions
RESPONSES = openai.resources.responses.responses.Responses
MESSAGES_API = anthropic.resources.messages.messages.Messages

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def oai(standin_server: Any, instrumented_module: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture
def aoai(standin_server: Any, instrumented_module: Any) -> openai.AsyncOpenAI:
    return openai_client(standin_server, async_=True)


@pytest.fixture(scope="module")
def ant(standin_server: Any, instrumented_module: Any) -> anthropic.Anthropic:
    return anthropic_client(standin_server)


@pytest.fixture
def aant(standin_server: Any, instrumented_module: Any) -> anthropic.AsyncAnthropic:
    return anthropic_client(standin_server, async_=True)


@pytest.fixture
def no_double_end(caplog: pytest.LogCaptureFixture):
    """Fails the test if the SDK warns that an ended span was ended again."""
    caplog.set_level(logging.WARNING, logger="opentelemetry.sdk.trace")
    yield
    assert not [r for r in caplog.records if "already ended" in r.getMessage() or "end()" in r.getMessage()]


def scrub(value: Any) -> Any:
    """A chunk as plain data without the per-request parts (ids, timestamps, signatures of ids).

    Only the fields the SDK parsed off the wire (``exclude_unset``, what ``to_dict()`` and
    ``to_json()`` give): a key the server added for us must not show.
    """
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in ("id", "created", "created_at", "item_id",
                                                                    "call_id", "completed_at")}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def assert_same_chunks(ours: list[Any], bare: list[Any]) -> None:
    assert len(ours) == len(bare)
    assert [type(c) for c in ours] == [type(c) for c in bare]
    assert [scrub(c) for c in ours] == [scrub(c) for c in bare]


# --- what the caller sees -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, {"include_usage": True}, {"include_usage": False}],
                         ids=["not-asked", "asked", "declined"])
@pytest.mark.parametrize("scenario", ["", "tools", "reasoning"])
def test_openai_chat_chunks_identical_to_uninstrumented(oai, sink, standin_server, options, scenario) -> None:
    kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "n": 2,
                              "extra_headers": {SCENARIO: scenario} if scenario else {}}
    if scenario == "tools":
        kwargs["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    if options is not None:
        kwargs["stream_options"] = options
    bare = list(CHAT.create.__wrapped__(oai.chat.completions, **kwargs))
    stream = oai.chat.completions.create(**kwargs)
    sent = standin_server.requests[-1].json
    assert isinstance(stream, openai.Stream)
    ours = list(stream)
    assert_same_chunks(ours, bare)
    usage_chunks = [c for c in ours if not c.choices]
    if options is None:
        assert sent["stream_options"] == {"include_usage": True}  # injected for exact usage ...
        assert usage_chunks == []  # ... and the extra chunk hidden
        attributes = sink.one_llm_span().attributes
        assert attributes["margin.usage.source"] == "provider"
        # Read from the last chunks only (the usage is exact, the text is not needed): both choices.
        reasons = {c.index: c.finish_reason for chunk in bare for c in chunk.choices if c.finish_reason}
        assert list(attributes["gen_ai.response.finish_reasons"]) == [reasons[i] for i in sorted(reasons)]
    elif options["include_usage"]:
        assert len(usage_chunks) == 1  # the caller asked: it sees the chunk
    else:
        assert sent["stream_options"] == {"include_usage": False}  # the caller's choice is respected
        assert sink.one_llm_span().attributes["margin.usage.source"] == "estimated"


async def test_openai_async_chat_chunks_identical(aoai, sink) -> None:
    kwargs = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    bare = [c async for c in await ACHAT.create.__wrapped__(aoai.chat.completions, **kwargs)]
    stream = await aoai.chat.completions.create(**kwargs)
    assert isinstance(stream, openai.AsyncStream)
    ours = [c async for c in stream]
    assert_same_chunks(ours, bare)
    assert all(c.choices for c in ours)
    assert sink.one_llm_span().attributes["margin.usage.source"] == "provider"


class ParseCounter:
    """Wraps a client's ``_process_response_data`` (the SDK's parse of one stream event) to count calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
        self.count = 0
        parse = client._process_response_data

        def counted(**kwargs: Any) -> Any:
            self.count += 1
            return parse(**kwargs)

        monkeypatch.setattr(client, "_process_response_data", counted)


def check_exact_usage(sink: Any, oracle: Any, bare_with_usage: list[Any]) -> None:
    """The span's usage and cost are those of the usage chunk the bare SDK yields when asked."""
    (usage_chunk,) = [c for c in bare_with_usage if not c.choices]
    oracle.check_span(sink.one_llm_span(), oracle.openai_chat(usage_chunk.usage), model=usage_chunk.model,
                      provider="openai")


@pytest.mark.parametrize("scenario", ["", "cached,reasoning"])
def test_injected_usage_event_is_taken_before_the_sdk_parses_it(oai, sink, oracle, monkeypatch, scenario) -> None:
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "extra_headers": {SCENARIO: scenario}}
    bare = list(CHAT.create.__wrapped__(oai.chat.completions, stream=True, stream_options={"include_usage": True},
                                        **kwargs))
    parses = ParseCounter(monkeypatch, oai)
    stream = oai.chat.completions.create(stream=True, **kwargs)
    assert type(stream.__wrapped__) is openai.Stream
    chunks = list(stream)
    assert parses.count == len(chunks) == len(bare) - 1  # the usage event never reached the SDK's parser
    check_exact_usage(sink, oracle, bare)


async def test_async_injected_usage_event_is_taken_before_the_sdk_parses_it(aoai, sink, oracle,
                                                                           monkeypatch) -> None:
    kwargs = {"model": "gpt-4o", "messages": MESSAGES}
    bare = [c async for c in await ACHAT.create.__wrapped__(aoai.chat.completions, stream=True,
                                                            stream_options={"include_usage": True}, **kwargs)]
    parses = ParseCounter(monkeypatch, aoai)
    chunks = [c async for c in await aoai.chat.completions.create(stream=True, **kwargs)]
    assert parses.count == len(chunks) == len(bare) - 1
    check_exact_usage(sink, oracle, bare)


@pytest.mark.parametrize("scenario", ["", "tools"])
def test_tapped_stream_without_usage_is_estimated_from_its_event_text(oai, sink, scenario) -> None:
    """The caller declined usage: the observer reads the events' raw text (never the chunks)."""
    from otel_margin.tokens import estimate_output_tokens

    kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                              "stream_options": {"include_usage": False},
                              "extra_headers": {SCENARIO: scenario} if scenario else {}}
    if scenario == "tools":
        kwargs["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    chunks = list(oai.chat.completions.create(**kwargs))
    text = "".join(
        part
        for chunk in chunks for choice in chunk.choices
        for part in [choice.delta.content or ""] + [t.function.arguments or "" for t in choice.delta.tool_calls or ()]
    )
    attributes = sink.one_llm_span().attributes
    assert attributes["margin.usage.source"] == "estimated"
    assert attributes["gen_ai.usage.output_tokens"] == estimate_output_tokens(text, "gpt-4o-mini") > 0
    assert list(attributes["gen_ai.response.finish_reasons"]) == [
        c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert attributes["gen_ai.response.model"] == chunks[0].model


def test_long_tapped_stream_is_read_as_it_goes(oai, sink, oracle, monkeypatch) -> None:
    """Past a bound, a tapped stream's events are read mid-stream; usage and reasons stay exact."""
    import otel_margin.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_READ_EVENTS_EVERY", 4)
    sizes: list[int] = []
    read = pipeline.CallFlow._read_pending

    def spy(self: Any) -> None:
        sizes.append(len(self.pending))
        read(self)

    monkeypatch.setattr(pipeline.CallFlow, "_read_pending", spy)
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES}
    bare = list(CHAT.create.__wrapped__(oai.chat.completions, stream=True, stream_options={"include_usage": True},
                                        **kwargs))
    chunks = list(oai.chat.completions.create(stream=True, **kwargs))
    assert len(chunks) == len(bare) - 1 > 8
    assert max(sizes) <= 5 and sizes.count(4) >= 2  # read in batches on the way, never more held
    check_exact_usage(sink, oracle, bare)
    attributes = sink.one_llm_span().attributes
    assert list(attributes["gen_ai.response.finish_reasons"]) == [bare[-2].choices[0].finish_reason]


@pytest.mark.parametrize("installed", [False, True], ids=["refused", "bypassed"])
def test_untappable_stream_still_hides_the_usage_chunk(oai, sink, oracle, monkeypatch, installed) -> None:
    """A stream the tap cannot reach (another SDK shape): the parsed usage chunk is hidden instead.

    "bypassed": the tap was installed, but the SDK reads its events some other way; the first
    chunk shows it (no event was noted before it) and the chunks are noted and hidden instead."""
    import otel_margin.pipeline

    monkeypatch.setattr(otel_margin.pipeline, "tap_events", lambda *args: installed)
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    bare = list(CHAT.create.__wrapped__(oai.chat.completions, stream_options={"include_usage": True}, **kwargs))
    ours = list(oai.chat.completions.create(**kwargs))
    assert_same_chunks(ours, bare[:-1])
    check_exact_usage(sink, oracle, bare)


async def test_async_bypassed_tap_notes_the_chunks_instead(aoai, sink, oracle, monkeypatch) -> None:
    """The async form of "bypassed" above: the tap was installed, yet no event passed it."""
    import otel_margin.pipeline

    monkeypatch.setattr(otel_margin.pipeline, "tap_events", lambda *args: True)
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    bare = [c async for c in await ACHAT.create.__wrapped__(
        aoai.chat.completions, stream_options={"include_usage": True}, **kwargs)]
    ours = [c async for c in await aoai.chat.completions.create(**kwargs)]
    assert_same_chunks(ours, bare[:-1])
    check_exact_usage(sink, oracle, bare)


def test_tap_leaves_other_streams_alone() -> None:
    from otel_margin.streams import EventTap, tap_events

    class Started:
        def __init__(self) -> None:
            self._iterator = self._gen()
            next(self._iterator)

        def _gen(self) -> Any:
            yield from self._iter_events()

        def _iter_events(self) -> Any:
            yield from (1, 2)

    started = Started()
    assert tap_events(started, EventTap(), []) is False and "_iter_events" not in vars(started)
    assert tap_events(object(), EventTap(), []) is False
    assert tap_events(Started.__new__(Started), EventTap(), []) is False  # no _iterator at all


class OtherEvent:
    """An event class that keeps its text elsewhere than the SDKs' ``_data``."""

    def __init__(self, *, event: Any = None, data: Any = None, id: Any = None, retry: Any = None) -> None:
        self.event, self.text, self.id, self.retry = event, data, id, retry

    @property
    def data(self) -> Any:
        return self.text


class FakeStream:
    """The shape the tap relies on: ``_iterator`` reads ``_iter_events()`` when first resumed."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self._iterator = self._stream()

    def _iter_events(self) -> Any:
        yield from self.events

    def _stream(self) -> Any:
        for event in self._iter_events():
            yield event.data


class AsyncFakeStream(FakeStream):
    async def _iter_events(self) -> Any:  # type: ignore[override]
        for event in self.events:
            yield event

    async def _stream(self) -> Any:  # type: ignore[override]
        async for event in self._iter_events():
            yield event.data


event_texts = st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(['{"choices":[{"index":0}],"usage":null}', '{"choices":[],"usage":{"prompt_tokens":1}}',
                     "[DONE]", ',"usage":null}', ""]),
), max_size=8)


@settings(max_examples=200, deadline=None)
@given(texts=event_texts, classes=st.lists(st.booleans(), min_size=8, max_size=8))
def test_tapped_streams_do_what_the_event_tap_defines(texts, classes) -> None:
    """The sync loop writes EventTap.__call__ out for speed: it, the async loop and the
    definition agree on what the SDK parses and on what is noted, on any events."""
    import asyncio

    from openai._streaming import ServerSentEvent
    from otel_margin.instrumentation.openai.endpoints import _INJECTED_USAGE_TAP
    from otel_margin.streams import tap_events

    tap = _INJECTED_USAGE_TAP
    expected_parsed, expected_seen = [], []
    for text in texts:
        result = tap(text)
        expected_seen.append(text if result is None or type(result) is str else result)
        if result is None or type(result) is str:
            expected_parsed.append(text if result is None else result)

    def events() -> list[Any]:
        return [(ServerSentEvent if plain else OtherEvent)(data=text) for text, plain in zip(texts, classes)]

    seen: list[Any] = []
    stream = FakeStream(events())
    assert tap_events(stream, tap, seen)
    assert list(stream._iterator) == expected_parsed and seen == expected_seen

    async def read() -> list[Any]:
        return [data async for data in stream._iterator]

    seen = []
    stream = AsyncFakeStream(events())
    assert tap_events(stream, tap, seen)
    assert asyncio.run(read()) == expected_parsed and seen == expected_seen


def test_openai_responses_events_identical(oai, sink) -> None:
    kwargs = {"model": "gpt-5", "input": "hello", "stream": True, "extra_headers": {SCENARIO: "reasoning"}}
    bare = list(RESPONSES.create.__wrapped__(oai.responses, **kwargs))
    ours = list(oai.responses.create(**kwargs))
    assert_same_chunks(ours, bare)
    sink.one_llm_span()


@pytest.mark.parametrize("extra", [{}, {"thinking": {"type": "enabled", "budget_tokens": 1024}}])
def test_anthropic_events_identical(ant, sink, extra) -> None:
    kwargs = {"model": "claude-sonnet-4-5", "max_tokens": 300, "messages": MESSAGES, "stream": True, **extra}
    bare = list(MESSAGES_API.create.__wrapped__(ant.messages, **kwargs))
    stream = ant.messages.create(**kwargs)
    assert isinstance(stream, anthropic.Stream)
    assert_same_chunks(list(stream), bare)
    sink.one_llm_span()


def test_anthropic_stream_helper_text_identical(ant, sink) -> None:
    kwargs = {"model": "claude-haiku-4-5", "max_tokens": 300, "messages": MESSAGES}
    with MESSAGES_API.stream.__wrapped__(ant.messages, **kwargs) as bare_stream:
        bare = list(bare_stream)
    with ant.messages.stream(**kwargs) as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        ours = list(stream)
    assert_same_chunks(ours, bare)
    sink.one_llm_span()


# --- the span ends exactly once -----------------------------------------------------------------


def _chat_stream(oai: openai.OpenAI, scenario: str = "") -> Any:
    return oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                       extra_headers={SCENARIO: scenario} if scenario else {})


def test_ends_once_on_exhaustion_then_close_exit_and_gc(oai, sink, records, no_double_end) -> None:
    stream = _chat_stream(oai)
    with stream:
        chunks = list(stream)
        assert len(sink.llm_spans()) == 1  # ended at exhaustion, before the context exits
    stream.close()
    assert list(stream) == []
    del stream
    gc.collect()
    assert len(chunks) > 2
    assert len(sink.llm_spans()) == 1
    assert len(records.calls) == 1
    assert sink.one_llm_span().attributes["margin.usage.source"] == "provider"


def test_break_then_close_ends_once_with_estimated_usage(oai, sink, records, no_double_end) -> None:
    stream = _chat_stream(oai)
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    assert sink.llm_spans() == []  # still open: the caller may resume
    stream.close()
    stream.close()
    del stream
    gc.collect()
    span = sink.one_llm_span()
    assert len(records.calls) == 1
    assert span.attributes["margin.usage.source"] == "estimated"
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert span.attributes["margin.cost.status"] == "estimated"  # priced, from estimated usage


def test_context_exit_ends_once(oai, sink, records, no_double_end) -> None:
    with _chat_stream(oai) as stream:
        next(stream)
    span = sink.one_llm_span()
    assert span.attributes["margin.usage.source"] == "estimated"
    del stream
    gc.collect()
    assert len(sink.llm_spans()) == 1 and len(records.calls) == 1


def test_garbage_collection_ends_abandoned_stream(oai, sink, records, no_double_end) -> None:
    stream = _chat_stream(oai)
    next(stream)
    assert sink.llm_spans() == []
    del stream
    gc.collect()
    span = sink.one_llm_span()
    assert len(records.calls) == 1
    assert span.attributes["margin.usage.source"] == "estimated"


@pytest.mark.parametrize("make", ["chat", "chat-raw", "responses", "anthropic"])
def test_loop_over_an_unnamed_stream_ends_at_its_end(oai, ant, sink, records, make, no_double_end) -> None:
    """``for chunk in client....create(stream=True)``: nothing holds the stream but the loop's iterator."""
    if make == "chat":
        make_stream = lambda: oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # noqa: E731
    elif make == "chat-raw":
        make_stream = lambda: oai.chat.completions.with_raw_response.create(  # noqa: E731
            model="gpt-4o-mini", messages=MESSAGES, stream=True).parse()
    elif make == "responses":
        make_stream = lambda: oai.responses.create(model="gpt-4o-mini", input="Hi", stream=True)  # noqa: E731
    else:
        make_stream = lambda: ant.messages.create(  # noqa: E731
            model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, stream=True)
    seen = 0
    for _chunk in make_stream():
        seen += 1
        assert sink.llm_spans() == []  # open while the caller still reads
    span = sink.one_llm_span()
    assert seen > 2 and len(records.calls) == 1
    assert span.attributes["margin.usage.source"] == "provider"
    assert span.attributes["gen_ai.usage.output_tokens"] > 0


def test_streaming_response_never_parsed_ends_on_gc(oai, sink, records, no_double_end) -> None:
    with oai.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES,
                                                             stream=True) as response:
        assert response.http_response.status_code == 200
    del response
    gc.collect()
    span = sink.one_llm_span()
    assert span.attributes["margin.usage.source"] == "estimated" and len(records.calls) == 1


async def test_async_loop_over_an_unnamed_stream_ends_at_its_end(aoai, sink, records) -> None:
    seen = 0
    async for _chunk in await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        seen += 1
        assert sink.llm_spans() == []
    assert seen > 2 and len(records.calls) == 1
    assert sink.one_llm_span().attributes["margin.usage.source"] == "provider"


def test_never_iterated_stream_ends_on_gc(oai, sink, records) -> None:
    stream = _chat_stream(oai)
    del stream
    gc.collect()
    assert sink.one_llm_span().attributes["margin.usage.source"] == "estimated"
    assert len(records.calls) == 1


@pytest.mark.parametrize("make", ["openai", "anthropic"])
def test_cut_stream_error_reaches_caller_unchanged_and_ends_once(oai, ant, sink, records, make,
                                                                 no_double_end) -> None:
    if make == "openai":
        kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                  "extra_headers": {SCENARIO: "cut-stream"}}
        # The stand-in cuts after half the events: send the bare call the request we send
        # (with the injected include_usage) so both are cut at the same event.
        bare_kwargs = {**kwargs, "stream_options": {"include_usage": True}}
        bare_call = lambda: CHAT.create.__wrapped__(oai.chat.completions, **bare_kwargs)  # noqa: E731
        call = lambda: oai.chat.completions.create(**kwargs)  # noqa: E731
    else:
        kwargs = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MESSAGES, "stream": True,
                  "extra_headers": {SCENARIO: "cut-stream"}}
        bare_call = lambda: MESSAGES_API.create.__wrapped__(ant.messages, **kwargs)  # noqa: E731
        call = lambda: ant.messages.create(**kwargs)  # noqa: E731
    bare_seen: list[Any] = []
    with pytest.raises(Exception) as bare_error:
        for chunk in bare_call():
            bare_seen.append(chunk)
    records.calls.clear()
    seen: list[Any] = []
    stream = call()
    with pytest.raises(Exception) as our_error:
        for chunk in stream:
            seen.append(chunk)
    assert type(our_error.value) is type(bare_error.value)
    assert str(our_error.value) == str(bare_error.value)
    if make == "openai":  # the bare call asked for usage itself, so its chunks carry "usage": null
        assert [type(c) for c in seen] == [type(c) for c in bare_seen]
        assert [scrub(c) for c in seen] == [
            {k: v for k, v in scrub(c).items() if (k, v) != ("usage", None)} for c in bare_seen]
    else:
        assert_same_chunks(seen, bare_seen)
    stream.close()
    del stream
    gc.collect()
    span = sink.one_llm_span()
    assert span.attributes["error.type"] == type(our_error.value).__qualname__
    assert span.attributes["margin.usage.source"] == "estimated"
    assert len(records.calls) == 1


async def test_async_break_and_close(aoai, sink, records, no_double_end) -> None:
    stream = await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    async for _chunk in stream:
        break
    await stream.close()
    await stream.close()
    span = sink.one_llm_span()
    assert span.attributes["margin.usage.source"] == "estimated"
    assert len(records.calls) == 1


async def test_async_context_exit_and_gc(aoai, sink, records) -> None:
    async with await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        await stream.__anext__()
    assert len(sink.llm_spans()) == 1
    abandoned = await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    await abandoned.__anext__()
    del abandoned
    gc.collect()
    spans = sink.llm_spans()
    assert len(spans) == 2 and len(records.calls) == 2
    assert all(s.attributes["margin.usage.source"] == "estimated" for s in spans)


def test_anthropic_stream_helper_break_is_estimated(ant, sink, records) -> None:
    with ant.messages.stream(model="claude-sonnet-4-5", max_tokens=300, messages=MESSAGES) as stream:
        for _text in stream.text_stream:
            break
    span = sink.one_llm_span()
    assert span.attributes["margin.usage.source"] == "estimated"
    assert span.attributes["gen_ai.usage.input_tokens"] > 0
    assert len(records.calls) == 1


def test_anthropic_raw_stream_break_is_estimated(ant, sink, records) -> None:
    stream = ant.messages.create(model="claude-sonnet-4-5", max_tokens=300, messages=MESSAGES, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    stream.close()
    span = sink.one_llm_span()
    assert span.attributes["margin.usage.source"] == "estimated"
    # message_start's input side is exact; the output is at least the placeholder and what was seen.
    assert span.attributes["gen_ai.usage.output_tokens"] >= 1
    assert len(records.calls) == 1


async def test_anthropic_async_stream_helper_break(aant, sink, records) -> None:
    async with aant.messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=MESSAGES) as stream:
        async for _text in stream.text_stream:
            break
    assert sink.one_llm_span().attributes["margin.usage.source"] == "estimated"
    assert len(records.calls) == 1
