"""A recorded provider response, replayed, gives the caller exactly what the provider's did, on every SDK surface."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_margin.replay import Exchange, recording, replaying
from otel_margin.standin import StandInServer, anthropic_client, openai_client

DEAD = "http://127.0.0.1:9"  # nothing listens: a replay that reached the network would fail
CHAT = [{"role": "user", "content": "Tell me about margins"}]


@pytest.fixture(scope="module")
def server():
    with StandInServer() as server:
        yield server


def dump(value):
    if isinstance(value, list):
        return [dump(v) for v in value]
    return (type(value), value.model_dump() if hasattr(value, "model_dump") else value)


def record_then_replay(server, call, sdk="openai", async_=False):
    """Run ``call(client)`` against the stand-in while recording, then against nothing while replaying."""
    build = openai_client if sdk == "openai" else anthropic_client
    live_client = build(server, async_=async_)
    dead_client = build(DEAD + ("/v1" if sdk == "openai" else ""), async_=async_)
    run = (lambda c: asyncio.run(call(c))) if async_ else call
    with recording() as recorded:
        live = run(live_client)
    exchange = recorded.last
    assert exchange is not None and exchange.status == 200
    exchange = Exchange.from_bytes(exchange.to_bytes())  # as a store returns it
    before = len(server.requests)
    with replaying(exchange):
        replayed = run(dead_client)
    assert len(server.requests) == before
    return live, replayed


def test_chat_completion(server):
    live, replayed = record_then_replay(
        server, lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=CHAT, temperature=0))
    assert dump(live) == dump(replayed)


def test_chat_stream_replays_chunk_for_chunk_as_the_same_stream_type(server):
    def call(client):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True})
        return type(stream), [dump(chunk) for chunk in stream]

    (live_type, live), (replayed_type, replayed) = record_then_replay(server, call)
    assert live_type is replayed_type is openai.Stream
    assert live == replayed and len(live) > 3


def test_async_chat_and_async_stream(server):
    async def call(client):
        response = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        return dump(response)

    live, replayed = record_then_replay(server, call, async_=True)
    assert live == replayed

    async def stream_call(client):
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        return [dump(chunk) async for chunk in stream]

    live, replayed = record_then_replay(server, stream_call, async_=True)
    assert live == replayed


def test_with_raw_response_and_with_streaming_response(server):
    def raw(client):
        response = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT)
        return response.headers.get("x-request-id"), dump(response.parse())

    live, replayed = record_then_replay(server, raw)
    assert live == replayed and live[0]

    def raw_stream(client):
        response = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, stream=True)
        return [dump(chunk) for chunk in response.parse()]

    live, replayed = record_then_replay(server, raw_stream)
    assert live == replayed

    def streaming(client):
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=CHAT, stream=True
        ) as response:
            return list(response.iter_lines())

    live, replayed = record_then_replay(server, streaming)
    assert live == replayed and any(line.startswith("data:") for line in live)


def test_responses_and_embeddings(server):
    live, replayed = record_then_replay(server, lambda c: c.responses.create(model="gpt-4o-mini", input="hi"))
    assert dump(live) == dump(replayed)
    live, replayed = record_then_replay(
        server, lambda c: c.embeddings.create(model="text-embedding-3-small", input="hi"))
    assert dump(live) == dump(replayed)


def test_anthropic_create_and_stream_manager(server):
    live, replayed = record_then_replay(
        server, lambda c: c.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=CHAT), sdk="anthropic")
    assert dump(live) == dump(replayed)

    def manager(client):
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=CHAT) as stream:
            events = [dump(event) for event in stream]
            return events, dump(stream.get_final_message())

    live, replayed = record_then_replay(server, manager, sdk="anthropic")
    assert live == replayed and len(live[0]) > 3

    async def async_manager(client):
        async with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=CHAT) as stream:
            return await stream.get_final_text()

    live, replayed = record_then_replay(server, async_manager, sdk="anthropic", async_=True)
    assert live == replayed and live


def test_a_stream_left_early_is_not_recorded(server):
    client = openai_client(server)
    with recording() as recorded:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)
        next(iter(stream))
        stream.close()
    assert recorded.exchanges == []


def test_a_replay_answers_one_request_and_nothing_outside_the_block(server):
    client = openai_client(server)
    with recording() as recorded:
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    before = len(server.requests)
    with replaying(recorded.last):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # the second goes out
    client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert len(server.requests) == before + 2


def test_an_error_response_is_recorded_as_it_was(server):
    client = openai_client(server)
    with recording() as recorded, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-standin-scenario": "error-429"})
    assert recorded.last.status == 429
    with replaying(recorded.last), pytest.raises(openai.RateLimitError):
        openai_client(DEAD + "/v1").chat.completions.create(model="gpt-4o-mini", messages=CHAT)


headers = st.lists(st.tuples(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=10),
                             st.text(max_size=20)), max_size=5)


@given(status=st.integers(100, 599), headers=headers, body=st.binary(max_size=200))
def test_stored_form_round_trips(status, headers, body):
    exchange = Exchange(status, tuple(headers), body)
    assert Exchange.from_bytes(exchange.to_bytes()) == exchange


@given(data=st.binary(max_size=100))
def test_anything_else_is_refused_with_value_error_not_misread(data):
    try:
        Exchange.from_bytes(data)
    except (ValueError, KeyError, TypeError):
        pass
